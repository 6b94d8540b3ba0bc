"""One geometric warp for an image and its label mask, so that labels move with the pixels.

The image is resampled bilinearly, the class mask with nearest neighbour (class ids must not
blend). Both use the same sampling maps and the same (mirrored) border, so a painted line and its
mask stay on the same pixels, also where the warp reaches past the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["remap_pair", "homography_pair"]


def remap_pair(image: np.ndarray, masks: list[np.ndarray], map_x: np.ndarray,
               map_y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``image`` and every mask sampled at ``(map_x, map_y)`` (float32 source coordinates)."""
    img = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out = [cv2.remap(m, map_x, map_y, cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_REFLECT_101) for m in masks]
    return img, out


def homography_pair(image: np.ndarray, masks: list[np.ndarray], matrix: np.ndarray
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Warp by the 3x3 ``matrix`` (output -> source is its inverse, as OpenCV applies it)."""
    h, w = image.shape[:2]
    img = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    out = [cv2.warpPerspective(m, matrix, (w, h), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_REFLECT_101) for m in masks]
    return img, out
