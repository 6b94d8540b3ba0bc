"""Pure-numpy metrics for both tasks, on the ground floor: training selects on them,
evaluation and the benchmarks report them, and neither imports the other to get them.

No torch and no scikit-learn here on purpose: these functions decide which model is promoted,
so they are small enough to check by hand (``tests/test_metrics.py`` does) and they never depend
on a library's defaults (e.g. what MCC is when a confusion-matrix row is empty).

Conventions
- Undefined values (AUROC with one class present, IoU of a class absent from both truth and
  prediction) are ``None``, never NaN: they survive JSON and cannot be averaged by accident.
- Roadwork predictions are positive-class probabilities; the label is ``prob >= threshold``.
- ECE is the top-label expected calibration error of Guo et al. (2017): confidence
  ``max(p, 1-p)`` binned into equal-width bins, weighted |accuracy - confidence|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: What a lanes model's per-class decision biases may be fitted for: the mask's IoU, or the
#: lines' skeleton F1 (``evaluation.line_biases``, for output traced to vectors). Here, on the
#: ground floor, because training's config and evaluation's calibration both name it.
LANE_BIAS_OBJECTIVES = ("iou", "lines")

__all__ = [
    "LANE_BIAS_OBJECTIVES",
    "binary_confusion",
    "mcc",
    "auroc",
    "ece",
    "reliability_bins",
    "classification_metrics",
    "seg_confusion",
    "iou_per_class",
    "segmentation_metrics",
    "image_lane_iou",
]


def _as_labels(values: Sequence | np.ndarray) -> np.ndarray:
    arr = np.asarray(values).astype(np.int64).ravel()
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    return arr


def binary_confusion(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> np.ndarray:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]`` (rows = truth, columns = prediction)."""
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    return np.bincount(t * 2 + p, minlength=4).reshape(2, 2)


def mcc(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """Matthews correlation coefficient; 0.0 when it is undefined (a constant row or column).

    0.0 for the degenerate case is what NATIX's validator and scikit-learn report: a model that
    always answers the same label has no correlation with the truth.
    """
    (tn, fp), (fn, tp) = binary_confusion(y_true, y_pred).astype(np.float64)
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    if denom == 0.0:
        return 0.0
    return float((tp * tn - fp * fn) / denom)


def auroc(y_true: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    t = _as_labels(y_true)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(t.sum()), int(t.size - t.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties so that equal scores contribute 1/2.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of 1-based ranks a+1..b
    u = ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def reliability_bins(
    y_true: Sequence | np.ndarray, probs: Sequence | np.ndarray, n_bins: int = 15
) -> list[dict]:
    """Per-bin count, mean confidence and accuracy of the top-label prediction (for plots)."""
    t = _as_labels(y_true)
    p = np.asarray(probs, dtype=np.float64).ravel()
    pred = (p >= 0.5).astype(np.int64)
    conf = np.where(pred == 1, p, 1.0 - p)
    correct = (pred == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins, the first one closed on both sides: confidence 1.0 lands in the last bin.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        out.append({
            "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
            "confidence": float(conf[sel].mean()) if n else None,
            "accuracy": float(correct[sel].mean()) if n else None,
        })
    return out


def ece(y_true: Sequence | np.ndarray, probs: Sequence | np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error (0 = perfectly calibrated)."""
    bins = reliability_bins(y_true, probs, n_bins)
    total = sum(b["n"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]) / total)


def classification_metrics(
    y_true: Sequence | np.ndarray,
    probs: Sequence | np.ndarray,
    threshold: float = 0.5,
    n_bins: int = 15,
) -> dict:
    """Every roadwork metric from labels and positive-class probabilities."""
    t = _as_labels(y_true)
    p = np.asarray(probs, dtype=np.float64).ravel()
    if t.size != p.size:
        raise ValueError(f"labels and probabilities differ in length ({t.size} vs {p.size})")
    pred = (p >= threshold).astype(np.int64)
    cm = binary_confusion(t, pred)
    (tn, fp), (fn, tp) = cm
    n = int(t.size)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "mcc": mcc(t, pred),
        "accuracy": float((tp + tn) / n) if n else 0.0,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auroc": auroc(t, p),
        "ece": ece(t, p, n_bins),
        "brier": float(np.mean((p - t) ** 2)) if n else 0.0,
        "confusion_matrix": cm.tolist(),
        "threshold": float(threshold),
        "n": n,
        "positive_rate": float(t.mean()) if n else 0.0,
    }


def seg_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, ignore_index: int | None = 255
) -> np.ndarray:
    """``num_classes x num_classes`` pixel confusion matrix (rows = truth); sum it over images."""
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"mask shapes differ ({np.shape(y_true)} vs {np.shape(y_pred)})")
    keep = np.ones_like(t, dtype=bool) if ignore_index is None else t != ignore_index
    t, p = t[keep], p[keep]
    if t.size and (t.max() >= num_classes or t.min() < 0 or p.max() >= num_classes or p.min() < 0):
        raise ValueError(f"class id outside 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def iou_per_class(cm: np.ndarray) -> list[float | None]:
    """IoU = TP / (TP + FP + FN) per class; None for a class in neither truth nor prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(cm.shape[0])]


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class IoU, mIoU with and without background (class 0), pixel accuracy."""
    cm = np.asarray(cm)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} classes")
    ious = iou_per_class(cm)
    total = cm.sum()
    return {
        "per_class_iou": dict(zip(class_names, ious, strict=True)),
        "miou": _mean(ious),
        "miou_no_bg": _mean(ious[1:]),
        "pixel_accuracy": float(np.trace(cm) / total) if total else 0.0,
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "pixels": int(total),
    }


def image_lane_iou(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | None:
    """One image's mean IoU over the lane classes (not background) present in truth or prediction.

    None for an image with no lane pixel in either mask (nothing to get wrong but background).
    """
    return _mean(iou_per_class(seg_confusion(y_true, y_pred, num_classes))[1:])
