"""Multi-view extraction: one large street image -> a stack of square views.

Small objects (a cone 50 m away is a few pixels in a 4032x3024 photo) vanish when the whole image
is resized to one model input, so large images are read as 12 views:

1. the global view (the whole image, resized; aspect ratio is not kept, as a model input);
2-10. a 3x3 grid of square tiles with 25% overlap, covering the image;
11. the centre square crop;
12. the right-side square crop (work zones are often at the road edge).

Images no larger than about twice the view size hold no detail that tiles would add, so they give
only the global view (V=1); NATIX requests (224 px JPEGs) take that path.

Which of the two a model sees is fixed when it is trained (``training_view_mode``): a model
whose training images all gave one view is stored as single-view (``num_views=1``) and stays
single-view on any input; cutting a 640x480 request into 12 views would run view pruning and
fusion it never trained on.

Speed: every view is a downscale, so ``cv2.INTER_AREA`` (box filtering, alias-free when
shrinking) does the work. Before cropping, the image is shrunk once by an integer factor so that
the largest tile is still at least ``view_size`` pixels; each view then resizes a much smaller
region. This is what makes 12 views of a 4032x3024 image take milliseconds rather than the
hundreds a LANCZOS resize of each crop takes (``benchmarks/bench_data.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

__all__ = ["extract_views", "view_boxes", "view_count", "training_view_mode",
           "MIN_SIDE_FOR_TILES"]

#: An image whose longer side is at most ``MIN_SIDE_FOR_TILES * view_size`` gives one view.
MIN_SIDE_FOR_TILES = 2.0
GRID = 3
OVERLAP = 0.25


def view_boxes(width: int, height: int, num_views: int = 12) -> list[tuple[int, int, int, int]]:
    """The (x0, y0, x1, y1) boxes of the views, in the original image's pixels."""
    boxes = [(0, 0, width, height)]
    if num_views == 1:
        return boxes
    # Tiles of side t with stride s = t * (1 - overlap), GRID tiles per axis, covering the longer
    # side exactly; on the shorter side tiles are clamped inside the image (more overlap).
    tile = int(round(max(width, height) / (1 + (GRID - 1) * (1 - OVERLAP))))
    tile = min(tile, width, height)
    for row in range(GRID):
        for col in range(GRID):
            x0 = _grid_start(col, width, tile)
            y0 = _grid_start(row, height, tile)
            boxes.append((x0, y0, x0 + tile, y0 + tile))
    side = min(width, height)
    cx, cy = (width - side) // 2, (height - side) // 2
    boxes.append((cx, cy, cx + side, cy + side))  # centre square
    boxes.append((width - side, cy, width, cy + side))  # right-side square
    return boxes[:num_views]


def _grid_start(index: int, length: int, tile: int) -> int:
    if GRID == 1:
        return (length - tile) // 2
    return int(round(index * (length - tile) / (GRID - 1)))


def view_count(width: int, height: int, view_size: int, num_views: int = 12) -> int:
    """How many views ``extract_views`` cuts from a ``width`` x ``height`` image."""
    return 1 if max(width, height) <= MIN_SIDE_FOR_TILES * view_size else num_views


def training_view_mode(sizes: Iterable[tuple[int, int]], view_size: int,
                       num_views: int = 12) -> str:
    """``"single"`` when every (width, height) in ``sizes`` gives one view, else ``"multi"``.

    A model trained only on images that ``view_count`` leaves whole never saw a tile; a single
    image that is cut makes the multiview path part of what it learnt.
    """
    if num_views == 1:
        return "single"
    counts = {view_count(int(w), int(h), view_size, num_views) for w, h in sizes}
    if not counts:
        raise ValueError("training_view_mode needs the size of at least one training image")
    return "single" if counts == {1} else "multi"


def extract_views(image: np.ndarray, view_size: int, num_views: int = 12) -> np.ndarray:
    """Cut ``image`` (HxWx3 uint8) into ``[V, view_size, view_size, 3]`` uint8 views.

    V is ``num_views`` (1 to 12) for large images and 1 for images whose longer side is at most
    twice ``view_size``. The first view is always the global view.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    if not 1 <= num_views <= 12:
        raise ValueError(f"num_views must be between 1 and 12, not {num_views}")
    height, width = image.shape[:2]
    boxes = view_boxes(width, height, view_count(width, height, view_size, num_views))
    # Shrink once by the largest integer factor that keeps every box >= view_size pixels.
    smallest_side = min(min(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes)
    factor = max(1, smallest_side // view_size)
    if factor > 1:
        small = cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    else:
        small = image
    scale_x, scale_y = small.shape[1] / width, small.shape[0] / height
    views = np.empty((len(boxes), view_size, view_size, 3), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        crop = small[int(y0 * scale_y):max(int(y0 * scale_y) + 1, int(y1 * scale_y)),
                     int(x0 * scale_x):max(int(x0 * scale_x) + 1, int(x1 * scale_x))]
        interpolation = cv2.INTER_AREA if min(crop.shape[:2]) >= view_size else cv2.INTER_LINEAR
        views[i] = cv2.resize(crop, (view_size, view_size), interpolation=interpolation)
    return views
