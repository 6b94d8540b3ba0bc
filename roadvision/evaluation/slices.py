"""Metrics per slice: weather, daytime, scene, city (+ confidence bin, NATIX level).

A slice value of NULL is reported as ``"null"``: NATIX queries carry no metadata, so the NULL
slice is the one that matters most in production. The promotion gate compares these slice by
slice, so every entry carries its sample count ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
                        fields: Sequence[str] = SLICE_FIELDS, vectors: Any = None) -> dict:
    """Per slice: pixel-summed confusion -> mIoU without background and per-class IoU.

    ``confusions`` [N, C, C] holds each image's confusion matrix, aligned with ``df`` rows.
    With ``vectors`` (``vector_metrics.ImageLengths`` of the same rows) each slice also gets
    ``polyline_f1`` (per lane class: length-weighted F1 at each tolerance, ``{"0.5m": f1,
    "1m": f1}``) and ``polyline_f1_1m`` (their mean at 1 m over the classes where it is
    defined; None when none is), which the gate may judge beside the IoU.
    """
    out: dict[str, dict] = {}
    for field in fields:
        out[field] = {}
        for key, idx in _groups(df, field).items():
            seg = segmentation_metrics(confusions[idx].sum(0), class_names)
            entry = {"n": int(len(idx)), "miou_no_bg": seg["miou_no_bg"],
                     "miou": seg["miou"], "per_class_iou": seg["per_class_iou"]}
            if vectors is not None:
                entry.update(_polyline_entry(vectors, idx))
            out[field][key] = entry
    return out


def _polyline_entry(vectors: Any, idx: np.ndarray) -> dict[str, Any]:
    # imported here: roadwork evaluations never load the geo stack
    from roadvision.evaluation.vector_metrics import f1_summary, vector_scores

    per_class = vector_scores([vectors.per_image[i] for i in idx], vectors.tolerances)
    tols = [f"{t:g}m" for t in vectors.tolerances]
    f1 = {name: {t: s[t]["f1"] for t in tols} for name, s in per_class.items()}
    return {"polyline_f1": f1, "polyline_f1_1m": f1_summary(per_class, 1.0)}
