"""Small geometry and raster helpers shared by the lane and roadwork renderers.

Polylines are float arrays of shape (N, 2) holding (x, y) pixel coordinates. OpenCV draws them;
numpy does the geometry (resampling, offsets, dash patterns), vectorised over the points.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "bezier",
    "resample",
    "offset",
    "dashes",
    "draw_polyline",
    "draw_polygon",
    "block_max",
    "encode_jpeg",
    "encode_png",
    "to_uint8",
]

_SHIFT = 3  # sub-pixel bits for cv2 drawing (1/8 px precision)
_SCALE = 1 << _SHIFT


def bezier(p0, p1, p2, num: int = 64) -> np.ndarray:
    """Quadratic Bezier curve through p0 -> p2 with control point p1."""
    t = np.linspace(0.0, 1.0, num, dtype=np.float64)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def resample(pts: np.ndarray, step: float) -> np.ndarray:
    """Points evenly spaced ``step`` apart along the polyline (keeps both ends)."""
    pts = np.asarray(pts, np.float64)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return pts[:1].copy()
    n = max(2, int(np.ceil(s[-1] / step)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)


def _normals(pts: np.ndarray) -> np.ndarray:
    tangent = np.gradient(pts, axis=0)
    tangent /= np.hypot(tangent[:, 0], tangent[:, 1])[:, None] + 1e-9
    return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def offset(pts: np.ndarray, distance: float) -> np.ndarray:
    """The polyline shifted sideways by ``distance`` (left of travel direction is negative)."""
    return pts + _normals(pts) * distance


def dashes(pts: np.ndarray, dash: float, gap: float, phase: float = 0.0) -> list[np.ndarray]:
    """Split a densely sampled polyline into dash polylines (``dash`` on, ``gap`` off)."""
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    on = ((s + phase) % (dash + gap)) < dash
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    starts = ([0] if on[0] else []) + [e + 1 for e in edges if not on[e]]
    stops = [e + 1 for e in edges if on[e]] + ([len(pts)] if on[-1] else [])
    return [pts[a:b] for a, b in zip(starts, stops, strict=False) if b - a >= 2]


def _ipts(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def draw_polyline(img: np.ndarray, pts: np.ndarray, value, thickness: float,
                  antialias: bool = False) -> None:
    """Draw an open polyline in place (sub-pixel endpoints; width rounded to >= 1 px)."""
    if len(pts) < 2:
        return
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    cv2.polylines(img, [_ipts(pts)], False, value, max(1, int(round(thickness))), line, _SHIFT)


def draw_polygon(img: np.ndarray, pts: np.ndarray, value, antialias: bool = False) -> None:
    """Fill a polygon in place."""
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    cv2.fillPoly(img, [_ipts(pts)], value, line, _SHIFT)


def block_max(arr: np.ndarray, factor: int) -> np.ndarray:
    """Max over non-overlapping factor x factor blocks (a supersampled label map -> pixels)."""
    if factor == 1:
        return arr
    h, w = arr.shape[0] // factor, arr.shape[1] // factor
    # A dilation anchored at the block's top-left corner, sampled every ``factor`` pixels, is
    # the block max; OpenCV does it ~5x faster than a numpy reduce over strided axes.
    kernel = np.ones((factor, factor), np.uint8)
    grown = cv2.dilate(arr[: h * factor, : w * factor], kernel, anchor=(0, 0),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return grown[::factor, ::factor]


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG (deterministic for fixed input and quality; no timestamps/EXIF)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(arr: np.ndarray) -> bytes:
    """PNG of a single-channel uint8 array (masks) or an RGB image."""
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
