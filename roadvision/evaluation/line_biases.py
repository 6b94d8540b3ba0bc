"""Lane decision biases fitted for lines, not for pixels: what a lane-marking inventory needs.

Biases fitted for IoU (``calibration.fit_class_biases``) reward a mask that covers the paint's
area; the vector product (``roadvision predict`` on a GeoTIFF, ``POST /v1/areas:analyze``) is
scored by line length instead (``roadvision.geo.metrics``: the share of predicted length within
a buffer of the truth, and of true length within the buffer of a prediction). On thin lines the
two disagree: an IoU fit trims the mask's edges and so breaks faint lines into pieces that the
tracer then loses. Measured on a held-out city (benchmarks/RESULTS.md, "geo"), IoU biases of
-1 to -1.5 cost yellow_solid 0.03 polyline F1 against the plain argmax.

This fits the per-class biases of ``argmax(logits / T + b)`` to maximise the mean, over lane
classes, of the *skeleton F1*: clDice's topology precision and sensitivity (Shit et al., CVPR
2021) with a tolerance, i.e. the pixel form of the polyline F1. Predicted skeleton pixels within
``tol_px`` of the true skeleton count as precise, true skeleton pixels within ``tol_px`` of the
predicted skeleton as found; counts add up over images. It needs only labelled masks, so it fits
on any validation split, imported or synthetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from skimage.morphology import skeletonize

from .calibration import ascend_biases

__all__ = ["skeleton_counts", "skeleton_f1", "fit_line_biases"]


def _near(skeleton: np.ndarray, tol_px: float) -> np.ndarray:
    """Pixels within ``tol_px`` of a skeleton pixel (all False for an empty skeleton)."""
    if not skeleton.any():
        return np.zeros_like(skeleton, dtype=bool)
    distance = cv2.distanceTransform((~skeleton).astype(np.uint8), cv2.DIST_L2, 3)
    return distance <= tol_px


def skeleton_counts(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int], tol_px: float,
                    truth_skeletons: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Per class (rows in ``classes`` order): predicted skeleton pixels near the truth, all
    predicted skeleton pixels, true skeleton pixels near a prediction, all true skeleton pixels.
    ``truth_skeletons`` (class -> skeleton) saves recomputing the truth's on every trial."""
    out = np.zeros((len(classes), 4), np.float64)
    for row, cls in enumerate(classes):
        s_true = (truth_skeletons[cls] if truth_skeletons is not None
                  else skeletonize(truth == cls))
        s_pred = skeletonize(pred == cls)
        out[row] = (np.count_nonzero(s_pred & _near(s_true, tol_px)), np.count_nonzero(s_pred),
                    np.count_nonzero(s_true & _near(s_pred, tol_px)), np.count_nonzero(s_true))
    return out


def skeleton_f1(counts: np.ndarray) -> np.ndarray:
    """F1 per class from summed :func:`skeleton_counts` (NaN for a class with no true line)."""
    found_p, n_p, found_t, n_t = counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_p > 0, found_p / n_p, 0.0)
        recall = found_t / n_t
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return np.where(n_t > 0, f1, np.nan)


def fit_line_biases(logits: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                    temperature: float, tol_px: float, grid: Sequence[float],
                    min_gain: float, rounds: int = 2) -> tuple[list[float], list, list]:
    """Biases (background's 0) for ``argmax(logits / T + b)`` maximising the mean skeleton F1
    of the lane classes present in ``masks`` (``logits``: [C, H, W] per image).

    Coordinate ascent, ``rounds`` passes over ``grid`` per class, nearest 0 first; a bias
    further from 0 must gain ``min_gain``. Returns the biases and the per-class F1 before
    (plain argmax) and after, on these images (in-sample: what the fit bought, not a test).
    """
    z = [np.asarray(x, np.float32) / np.float32(temperature) for x in logits]
    num_classes = z[0].shape[0]
    present = [c for c in range(1, num_classes) if any(np.any(m == c) for m in masks)]
    truth_skeletons = [{c: skeletonize(m == c) for c in present} for m in masks]

    def per_class(b: np.ndarray) -> np.ndarray:  # lane classes 1..C-1; NaN: no true line
        counts = sum(skeleton_counts((zi + b[:, None, None]).argmax(0), m, present, tol_px, ts)
                     for zi, m, ts in zip(z, masks, truth_skeletons, strict=True))
        f1 = np.full(num_classes - 1, np.nan)
        f1[[c - 1 for c in present]] = skeleton_f1(np.asarray(counts))
        return f1

    def score(b: np.ndarray) -> float:
        return float(np.nanmean(per_class(b)))

    if not present:
        return [0.0] * num_classes, [None] * (num_classes - 1), [None] * (num_classes - 1)
    before = per_class(np.zeros(num_classes, np.float32))
    bias = ascend_biases(score, present, num_classes, grid, min_gain, rounds)
    after = per_class(np.asarray(bias, np.float32))

    def listed(f1: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in f1]

    return bias, listed(before), listed(after)
