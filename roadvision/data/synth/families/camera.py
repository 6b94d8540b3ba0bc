"""The ``camera`` family: another lighting and camera model.

The classic camera is a mild one: a small exposure and tint jitter, a gamma, a Gaussian blur
and additive Gaussian noise. This one models a consumer camera's pipeline instead: white
balance set by a colour temperature (a blue or amber cast), exposure over +-1.5 stops, a
cos^4-style vignette around an off-centre optical axis, lateral chromatic aberration (red and
blue scaled radially), a tone curve (filmic shoulder or an S-curve), saturation, shot noise that
grows with the signal, and radial lens distortion (barrel or pincushion) that moves the labels
with the pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadvision.data.synth.families._warp import remap_pair
from roadvision.data.synth.textures import smooth_noise

__all__ = ["consumer_camera", "lanes_camera", "street_camera", "lens_distortion"]


def _radius2(h: int, w: int, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2


def consumer_camera(rng: np.random.Generator, img: np.ndarray, noise_scale: float = 1.0
                    ) -> np.ndarray:
    """The photometric part: float RGB in about [0, 255] -> the same, through the pipeline."""
    h, w = img.shape[:2]
    # White balance from a colour temperature offset: warm = more red, cooler = more blue.
    t = rng.normal(0.0, 0.18)
    img = img * np.float32([np.exp(t), np.exp(rng.normal(0, 0.04)), np.exp(-t)])
    img = img * np.float32(2.0 ** rng.uniform(-0.8, 0.7))  # exposure in stops
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    r2 = _radius2(h, w, cx, cy)
    strength = rng.uniform(0.15, 0.55)
    img = img * (1.0 / (1.0 + strength * r2) ** 2)[..., None]
    if rng.random() < 0.6:  # lateral chromatic aberration: R and B magnified differently
        shift_px = rng.uniform(0.4, 1.5)  # colour fringe width at the frame's edge
        for ch, sign in ((0, 1.0), (2, -1.0)):
            s = 1.0 + sign * shift_px / (max(h, w) / 2)
            m = cv2.getRotationMatrix2D((cx, cy), 0.0, s)
            img[..., ch] = cv2.warpAffine(np.ascontiguousarray(img[..., ch]), m, (w, h),
                                          borderMode=cv2.BORDER_REFLECT_101)
    x = np.clip(img / 255.0, 0.0, None)
    if rng.random() < 0.5:  # filmic: a soft shoulder keeps highlights
        x = x * (1.0 + x / rng.uniform(1.5, 4.0) ** 2) / (1.0 + x)
        x = x / max(float(np.percentile(x, 99.5)), 0.2)
    else:  # S-curve: a blend towards smoothstep (more contrast in the mid-tones)
        x = np.clip(x, 0, 1)
        a = rng.uniform(0.2, 0.8)
        x = x * (1 - a) + x * x * (3 - 2 * x) * a
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.5, 1.5)
    # Shot noise (variance ~ signal) plus read noise, and slow lighting unevenness.
    x = x + np.sqrt(np.clip(x, 0, 1) * rng.uniform(2e-4, 2e-3) * noise_scale) \
        * rng.standard_normal(x.shape, dtype=np.float32)
    x = x + rng.uniform(0.002, 0.01) * noise_scale * rng.standard_normal(x.shape,
                                                                         dtype=np.float32)
    x *= (1.0 + 0.08 * smooth_noise(rng, h, w, max(h, w) / 2.0))[..., None]
    return np.clip(x, 0.0, 1.0) * 255.0


def lanes_camera(rng: np.random.Generator, img: np.ndarray, ppm: float
                 ) -> tuple[np.ndarray, float]:
    """``lanes._camera``'s contract: (image, haze)."""
    h, w = img.shape[:2]
    haze = float(rng.uniform(0.05, 0.3)) if rng.random() < 0.3 else 0.0
    if haze:  # a flat, bluish veil (the classic haze is a grey noise field)
        img = img * (1 - haze) + np.float32([185, 200, 225]) * haze
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.25, 0.6))
    return consumer_camera(rng, img), haze


def street_camera(rng: np.random.Generator, img: np.ndarray, env) -> np.ndarray:
    """``_street.apply_camera``'s contract; night frames get more gain (more noise)."""
    gain = {"day": 1.0, "dusk": 3.0, "night": 8.0}[env.daytime]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    return consumer_camera(rng, img, noise_scale=gain)


def lens_distortion(rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Radial distortion r' = r (1 + k1 r^2 + k2 r^4), barrel (k1 < 0) or pincushion."""
    h, w = image.shape[:2]
    k1 = rng.uniform(-0.18, 0.1)
    k2 = rng.uniform(-0.03, 0.03)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = w / 2 + rng.normal(0, w * 0.02), h / 2 + rng.normal(0, h * 0.02)
    nx, ny = (xx - cx) / (w / 2), (yy - cy) / (h / 2)
    r2 = nx * nx + ny * ny
    f = 1.0 + k1 * r2 + k2 * r2 * r2
    # Normalise so that the frame's corners stay inside the source (no empty border).
    f /= max(1.0 + k1 * 2.0 + k2 * 4.0, 1.0)
    map_x = (cx + nx * f * (w / 2)).astype(np.float32)
    map_y = (cy + ny * f * (h / 2)).astype(np.float32)
    return remap_pair(image, masks, map_x, map_y)
