"""The NATIX StreetVision validator's query protocol, reproduced for offline evaluation.

A NATIX query is one 224x224 JPEG with no metadata, augmented at one of four levels:
  0: none (resize only)
  1: geometric: rotation +-20 deg, random resized crop (scale 0.2-1), horizontal/vertical flips
  2: level 1 + colour and compression: saturation, contrast, JPEG re-encoding
  3: level 2 + sensor damage: Gaussian noise and blur
then sent as a JPEG. The reward is MCC at threshold 0.5. Each evaluated image gets a level
(``index % 4``, so levels are balanced and reproducible) and a per-image seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
from PIL import Image

from roadvision.data.augment import apply_augment

__all__ = ["NATIX_SIZE", "NATIX_LEVELS", "natix_pipeline", "jpeg_roundtrip", "natix_hook",
           "natix_level"]

NATIX_SIZE = 224
NATIX_LEVELS = (0, 1, 2, 3)
NATIX_JPEG_QUALITY = 90  # the final encoding of the query


def natix_pipeline(level: int, size: int = NATIX_SIZE) -> A.Compose:
    """The augmentation of one NATIX level, ending at ``size`` x ``size``."""
    if level not in NATIX_LEVELS:
        raise ValueError(f"NATIX level must be one of {NATIX_LEVELS}, got {level}")
    if level == 0:
        return A.Compose([A.Resize(size, size)])
    ops: list[A.BasicTransform] = [
        A.Affine(rotate=(-20, 20), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.RandomResizedCrop(size=(size, size), scale=(0.2, 1.0), p=1.0),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
    ]
    if level >= 2:
        ops += [A.ColorJitter(brightness=0.0, contrast=(0.7, 1.3), saturation=(0.6, 1.4), hue=0.0,
                              p=1.0),
                A.ImageCompression(quality_range=(40, 90), p=1.0)]
    if level >= 3:
        ops += [A.GaussNoise(std_range=(0.02, 0.08), p=1.0),
                A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.5, 2.0), p=1.0)]
    return A.Compose(ops)


def jpeg_roundtrip(image: np.ndarray, quality: int = NATIX_JPEG_QUALITY) -> np.ndarray:
    """Encode as JPEG and decode again: what the validator's base64 payload holds."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def natix_level(index: int) -> int:
    return index % len(NATIX_LEVELS)


def natix_hook(seed: int = 0, size: int = NATIX_SIZE) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(image, index) -> 224 px JPEG-decoded image`` for ``ManifestDataset(image_hook=...)``."""
    pipelines = {level: natix_pipeline(level, size) for level in NATIX_LEVELS}

    def hook(image: np.ndarray, index: int) -> np.ndarray:
        out, _ = apply_augment(pipelines[natix_level(index)], image, seed=seed * 7919 + index)
        return jpeg_roundtrip(out)

    return hook
