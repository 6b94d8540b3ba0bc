"""Compute budget per request: what a request will cost the model, known before decoding.

The unit is one model input: a sliding window of ``cfg.input_size`` pixels for lanes (a tile
larger than the window is cut into overlapping windows, and every TTA copy is cut again at its
own scale), one view of ``cfg.view_size`` pixels for roadwork (a large image gives
``cfg.num_views`` views), times the TTA copies. The sizes come from the image headers, so a
request over the budget is refused (413) before a pixel is decoded: a 3 KB PNG announcing
4900 x 4900 pixels is under ``max_pixels`` but would cost hundreds of lanes windows.
"""

from __future__ import annotations

from typing import Any

from roadvision.data.multiview import view_count
from roadvision.models.tta import sliding_window_starts, tta_copies


def lanes_windows(width: int, height: int, input_size: int, tta: str) -> int:
    """Windows one lanes tile costs with ``tta`` (as ``models.tta`` cuts them, after the tile
    is padded up to the window as ``runtime.inference`` does for small tiles)."""
    height, width = max(height, input_size), max(width, input_size)
    total = 0
    for scale, _flip in tta_copies(tta):
        scaled_h = max(input_size, round(height * scale))
        scaled_w = max(input_size, round(width * scale))
        total += (len(sliding_window_starts(scaled_h, input_size))
                  * len(sliding_window_starts(scaled_w, input_size)))
    return total


def instance_cost(cfg: Any, width: int, height: int, tta: str) -> int:
    """Model inputs one image costs (``cfg`` is the model's config)."""
    if cfg.task == "lanes":
        return lanes_windows(width, height, int(cfg.input_size), tta)
    return view_count(width, height, int(cfg.view_size), int(cfg.num_views)) * len(tta_copies(tta))


def describe(cfg: Any) -> str:
    """The unit in words, for error messages."""
    if cfg.task == "lanes":
        return f"{cfg.input_size}x{cfg.input_size} model windows"
    return f"{cfg.view_size}x{cfg.view_size} model views"
