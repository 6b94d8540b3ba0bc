"""Ground textures and noise fields.

Real photos beat procedural noise for surface detail, and scikit-image ships a few (gravel,
grass, brick) inside the wheel, so they work offline. They are loaded once per process, turned
into zero-mean detail maps, and warped (random rotation, scale, offset) so that no two samples
reuse the same patch in the same way.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

__all__ = ["TEXTURES", "TEXTURE_MPP", "texture_field", "texture_at_gsd", "smooth_noise", "tinted"]

TEXTURES = ("gravel", "grass", "brick")


@cache
def _detail(name: str) -> np.ndarray:
    """A texture as float32 zero-mean, unit-std detail map (cached per process)."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; expected one of {TEXTURES}")
    import skimage.data  # heavy import, only when a texture is first needed

    img = getattr(skimage.data, name)().astype(np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    # Remove the photo's own low-frequency lighting so that tiles do not show a seam pattern.
    img -= cv2.GaussianBlur(img, (0, 0), 24)
    img /= img.std() + 1e-6
    img.setflags(write=False)
    return img


#: Approximate metres per pixel of each stock photo (gravel stones of a few cm, grass blades,
#: bricks about 25 cm long): ``metres_per_px / gsd`` is the zoom that puts them at true size.
TEXTURE_MPP = {"gravel": 0.0015, "grass": 0.003, "brick": 0.004}


@cache
def _shrunk(name: str, factor: int) -> np.ndarray:
    """The detail map area-averaged by ``factor``: a zoomed-out warp must not alias."""
    src = _detail(name)
    if factor == 1:
        return src
    small = cv2.resize(src, (src.shape[1] // factor, src.shape[0] // factor),
                       interpolation=cv2.INTER_AREA)
    small = small / (small.std() + 1e-6)  # keep unit contrast: fine grain still shows as noise
    small.setflags(write=False)
    return small


def texture_at_gsd(rng: np.random.Generator, name: str, height: int, width: int,
                   gsd: float, size_factor: float = 1.0) -> np.ndarray:
    """A detail map of a stock texture at its physical size for ground sample distance ``gsd``
    (metres per pixel); ``size_factor`` > 1 makes the features larger (e.g. leaf clumps)."""
    return texture_field(rng, name, height, width, TEXTURE_MPP[name] * size_factor / gsd)


def texture_field(rng: np.random.Generator, name: str, height: int, width: int,
                  scale: float = 1.0) -> np.ndarray:
    """A (height, width) float32 detail map warped from a stock texture.

    ``scale`` > 1 magnifies the texture (coarser grain), as a smaller ground sample distance does;
    ``scale`` < 1 shrinks it, from an area-averaged copy so that it does not alias.
    """
    angle = rng.uniform(0, 360)
    zoom = scale * rng.uniform(0.8, 1.25)
    factor = 1
    while zoom * factor < 0.7 and factor < 64:
        factor *= 2
    src = _shrunk(name, factor)
    zoom *= factor
    centre = (src.shape[1] * rng.uniform(0.3, 0.7), src.shape[0] * rng.uniform(0.3, 0.7))
    mat = cv2.getRotationMatrix2D(centre, angle, zoom)
    # Move the source centre onto the output centre.
    mat[0, 2] += width / 2 - centre[0]
    mat[1, 2] += height / 2 - centre[1]
    return cv2.warpAffine(src, mat, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled bicubically.

    ``cell`` is the feature size in pixels; used for wear, exposure gradients and fog.
    """
    gh = max(2, int(np.ceil(height / cell)) + 1)
    gw = max(2, int(np.ceil(width / cell)) + 1)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * 0.7, -1, 1)


def tinted(detail: np.ndarray, colour: tuple[int, int, int], amount: float,
           rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """An HxWx3 float32 image: ``colour`` modulated by ``detail`` (relative contrast ``amount``)."""
    base = np.asarray(colour, np.float32)
    if rng is not None and jitter:
        base = base * rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32)
    return base[None, None, :] * (1.0 + amount * detail[..., None])
