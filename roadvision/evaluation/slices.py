"""Metrics per slice: weather, daytime, scene, city (+ confidence bin, NATIX level).

A slice value of NULL is reported as ``"null"``: NATIX queries carry no metadata, so the NULL
slice is the one that matters most in production. The promotion gate compares these slice by
slice, so every entry carries its sample count ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from roadvision.metrics import mcc, segmentation_metrics

__all__ = ["SLICE_FIELDS", "CONFIDENCE_EDGES", "slice_key", "classification_slices",
           "confidence_slices", "segmentation_slices"]

SLICE_FIELDS = ("weather", "daytime", "scene", "city")
CONFIDENCE_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def slice_key(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "null"
    return str(value)


def _groups(df: pd.DataFrame, field: str) -> dict[str, np.ndarray]:
    keys = np.array([slice_key(v) for v in df[field]]) if field in df.columns else \
        np.array(["null"] * len(df))
    return {str(k): np.flatnonzero(keys == k) for k in sorted(set(keys))}


def classification_slices(df: pd.DataFrame, fields: Sequence[str] = SLICE_FIELDS) -> dict:
    """``{field: {value: {n, mcc, accuracy, positive_rate, mean_prob}}}`` from predictions."""
    out: dict[str, dict] = {}
    for field in fields:
        out[field] = {}
        for key, idx in _groups(df, field).items():
            y = df["label"].to_numpy()[idx].astype(int)
            p = df["pred"].to_numpy()[idx].astype(int)
            out[field][key] = {
                "n": int(len(idx)), "mcc": mcc(y, p), "accuracy": float((y == p).mean()),
                "positive_rate": float(y.mean()), "mean_prob": float(df["prob"].iloc[idx].mean()),
            }
    return out


def confidence_slices(df: pd.DataFrame, edges: Sequence[float] = CONFIDENCE_EDGES) -> dict:
    """Accuracy per confidence bin (confidence = max(p, 1 - p))."""
    conf = df["confidence"].to_numpy()
    correct = df["correct"].to_numpy().astype(float)
    out = {}
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        sel = (conf >= lo) & ((conf <= hi) if last else (conf < hi))
        n = int(sel.sum())
        out[f"{lo:.1f}-{hi:.1f}"] = {
            "n": n, "accuracy": float(correct[sel].mean()) if n else None,
            "mean_confidence": float(conf[sel].mean()) if n else None,
        }
    return out


def segmentation_slices(df: pd.DataFrame, confusions: np.ndarray, class_names: Sequence[str],
                        fields: Sequence[str] = SLICE_FIELDS) -> dict:
    """Per slice: pixel-summed confusion -> mIoU without background and per-class IoU.

    ``confusions`` [N, C, C] holds each image's confusion matrix, aligned with ``df`` rows.
    """
    out: dict[str, dict] = {}
    for field in fields:
        out[field] = {}
        for key, idx in _groups(df, field).items():
            seg = segmentation_metrics(confusions[idx].sum(0), class_names)
            out[field][key] = {"n": int(len(idx)), "miou_no_bg": seg["miou_no_bg"],
                               "miou": seg["miou"], "per_class_iou": seg["per_class_iou"]}
    return out
