"""The ``procedural`` family: surfaces from noise synthesis and palettes drawn afresh.

The classic renderer textures every surface with three stock photos (scikit-image's gravel,
grass and brick) tinted by the city's palette. Here no photo is used: detail maps are spectral
noise (white noise shaped by a random 1/f^beta power spectrum, which tiles seamlessly), with
streaks for grass and a mortar grid for brick; and the palette (asphalt, verge, roofs, facades,
sky, paint tint) is drawn per sample from broad ranges instead of the city's fixed colours. The
equipment's colours (cones, vests) stay the city's: they carry the label.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from roadvision.data.synth.cities import City
from roadvision.data.synth.textures import TEXTURE_MPP

__all__ = ["spectral_noise", "procedural_detail", "procedural_texture", "DetailSource",
           "repaint_city"]


def spectral_noise(rng: np.random.Generator, height: int, width: int, beta: float,
                   feature_px: float) -> np.ndarray:
    """Zero-mean, unit-std periodic noise with power ~ 1/f^beta, no detail finer than
    ``feature_px`` pixels."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2) * np.exp(-(f * feature_px) ** 2)
    amp[0, 0] = 0.0
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    out = np.fft.irfft2(spec, s=(height, width)).astype(np.float32)
    return (out - out.mean()) / (out.std() + 1e-6)


def _streaks(rng, height, width, feature_px) -> np.ndarray:
    """Grass-like: noise smeared along one random direction (blades, mowing stripes)."""
    base = spectral_noise(rng, height, width, rng.uniform(0.5, 1.2), max(feature_px, 0.5))
    length = int(np.clip(feature_px * rng.uniform(3, 8), 3, 31)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= kernel.sum() + 1e-6
    pad = length // 2 + 1  # wrap-padded, so that the result still tiles seamlessly
    wrapped = np.pad(base, pad, mode="wrap")
    out = cv2.filter2D(wrapped, -1, kernel)[pad:-pad, pad:-pad]
    return (out - out.mean()) / (out.std() + 1e-6)


def _bricks(rng, height, width, feature_px) -> np.ndarray:
    """Brick-like: a running-bond mortar grid plus per-brick shade and fine noise."""
    bw = max(4.0, feature_px * rng.uniform(8, 14))
    bh = bw * rng.uniform(0.3, 0.5)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    row = np.floor(yy / bh)
    shifted = xx + (row % 2) * bw / 2
    col = np.floor(shifted / bw)
    mortar = (np.mod(yy, bh) < 1.0) | (np.mod(shifted, bw) < 1.0)
    shade = np.random.default_rng(int(rng.integers(1 << 31))).standard_normal(
        (int(row.max()) + 2, int(col.max()) + 2)).astype(np.float32)
    out = shade[row.astype(int), col.astype(int)] * 0.6 - mortar * 2.0
    out += 0.5 * spectral_noise(rng, height, width, 1.0, 0.7)
    return (out - out.mean()) / (out.std() + 1e-6)


def _make(rng, name: str, height: int, width: int, feature_px: float) -> np.ndarray:
    if name == "grass":
        return _streaks(rng, height, width, feature_px)
    if name == "brick":
        return _bricks(rng, height, width, feature_px)
    return spectral_noise(rng, height, width, rng.uniform(0.3, 1.6), max(feature_px, 0.4))


def procedural_texture(rng: np.random.Generator, name: str, height: int, width: int,
                       gsd: float, size_factor: float = 1.0) -> np.ndarray:
    """``textures.texture_at_gsd``'s contract (a zero-mean detail map at physical size)."""
    # The stock photos' features are ~100 texture px (a stone); keep the same physical scale.
    feature_px = float(np.clip(TEXTURE_MPP[name] * 40 * size_factor / gsd, 0.4, 64.0))
    return _make(rng, name, height, width, feature_px)


class DetailSource:
    """``textures._detail``'s contract (name -> periodic detail map), drawn once per sample.

    The street renderer samples the map at 400 (road) or 25 (verge) texture px per metre with
    wrap-around borders; spectral noise is periodic, so no seams appear.
    """

    def __init__(self, rng: np.random.Generator, size: int = 256) -> None:
        self.rng, self.size, self.cache = rng, size, {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.cache:
            self.cache[name] = _make(self.rng, name, self.size, self.size,
                                     float(self.rng.uniform(1.0, 6.0)))
        return self.cache[name]


def procedural_detail(rng: np.random.Generator) -> DetailSource:
    return DetailSource(rng)


def _hsv(rng, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]
         ) -> tuple[int, int, int]:
    """One RGB colour from HSV ranges (hue in degrees, saturation and value in [0, 1])."""
    hsv = np.uint8([[[rng.uniform(*hue) % 360 / 2, rng.uniform(*sat) * 255,
                      rng.uniform(*val) * 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def repaint_city(rng: np.random.Generator, city: City) -> City:
    """The city with a palette drawn from broad ranges (its conventions and equipment kept)."""
    grey = rng.uniform(0.18, 0.55)
    return dataclasses.replace(
        city,
        asphalt=_hsv(rng, (180, 260), (0.0, 0.15), (grey, grey + 0.05)),
        verge=_hsv(rng, (30, 130), (0.15, 0.6), (0.25, 0.6)),
        roof=_hsv(rng, (0, 360), (0.05, 0.6), (0.3, 0.8)),
        building=_hsv(rng, (0, 360), (0.0, 0.4), (0.35, 0.85)),
        sky=_hsv(rng, (190, 230), (0.1, 0.6), (0.6, 0.95)),
        white=_hsv(rng, (0, 360), (0.0, 0.08), (0.8, 0.97)),
        yellow=_hsv(rng, (38, 56), (0.6, 0.95), (0.75, 0.95)),
        verge_texture=str(rng.choice(["grass", "gravel"])),
    )
