"""The ``degraded`` family: another noise and compression chain after the camera.

Classic frames leave the renderer clean and are JPEG-encoded once at quality 72-96. Real
inputs have been through more: a resample (a video frame scaled down and back, a thumbnail), a
defocus or motion blur, sensor noise that is signal-dependent, banded and coloured, and one or
two JPEG passes at low quality with chroma subsampling (messaging apps, dash-cam recorders).
Pixel positions do not move, so lane masks stay aligned; lanes get milder settings because their
1-3 px lines are the whole signal.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["degrade", "degrade_lanes", "degrade_street", "jpeg_roundtrip"]


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG (4:2:0 chroma subsampling, OpenCV's default)."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _blur(rng, img: np.ndarray, max_px: float) -> np.ndarray:
    size = rng.uniform(1.0, max_px)
    k = int(np.ceil(size)) * 2 + 1
    if rng.random() < 0.5:  # defocus: a disc
        kernel = np.zeros((k, k), np.float32)
        cv2.circle(kernel, (k // 2, k // 2), max(1, int(round(size))), 1.0, -1, cv2.LINE_AA)
    else:  # motion: a line at a random angle
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= kernel.sum() + 1e-6
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def degrade(rng: np.random.Generator, image: np.ndarray, *, min_scale: float, max_blur: float,
            quality: tuple[int, int], noise: float) -> np.ndarray:
    """uint8 RGB -> uint8 RGB through resample, blur, sensor noise and JPEG (each random)."""
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    if rng.random() < 0.7:
        s = rng.uniform(min_scale, 0.95)
        small = cv2.resize(img, (max(8, int(w * s)), max(8, int(h * s))),
                           interpolation=cv2.INTER_AREA)
        up = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
        img = cv2.resize(small, (w, h), interpolation=up)
    if rng.random() < 0.6:
        img = _blur(rng, img, max_blur)
    if rng.random() < 0.85:
        sigma = rng.uniform(0.3, 1.0) * noise
        shot = np.sqrt(np.clip(img, 0, 255) / 255.0) * sigma
        img = img + shot * rng.standard_normal(img.shape, dtype=np.float32)
        # Row banding and low-resolution colour noise (demosaicing smears it over blocks).
        img = img + rng.uniform(0, 0.3) * sigma * rng.standard_normal((h, 1, 1)).astype(
            np.float32)
        chroma = rng.standard_normal((max(1, h // 4), max(1, w // 4), 3)).astype(np.float32)
        img = img + rng.uniform(0, 0.4) * sigma * cv2.resize(chroma, (w, h))
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    for _ in range(1 if rng.random() < 0.7 else 2):
        out = jpeg_roundtrip(out, int(rng.integers(*quality)))
    return out


def degrade_lanes(rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    return degrade(rng, image, min_scale=0.65, max_blur=1.2, quality=(35, 80),
                   noise=10.0), masks


def degrade_street(rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    return degrade(rng, image, min_scale=0.35, max_blur=2.5, quality=(15, 70),
                   noise=18.0), masks
