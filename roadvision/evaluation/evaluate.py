"""``evaluate``: one bundle on one split of one data set, with slices, written to disk.

It reads exactly the split it is asked for (``split=None``: every row, for external data sets
without a split column) and nothing else, and changes nothing: calibration is fitted by
``calibrate`` on validation, never here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.errors import UserError
from roadvision.evaluation.slices import (
    classification_slices,
    confidence_slices,
    segmentation_slices,
)
from roadvision.metrics import (
    classification_metrics,
    image_lane_iou,
    reliability_bins,
    seg_confusion,
    segmentation_metrics,
)

__all__ = ["evaluate", "evaluate_model", "PROTOCOLS", "TTA_MODES"]

PROTOCOLS = (None, "natix")
TTA_MODES = ("none", "flip", "full")
META_COLUMNS = ("city", "weather", "daytime", "scene", "lat", "lon")


def evaluate(
    bundle_dir: str | Path,
    data_dir: str | Path,
    split: str | None = "test",
    tta: str = "none",
    protocol: str | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    seed: int = 0,
    natix_queries: int | None = None,
) -> dict[str, Any]:
    """Metrics of the bundle on ``split``; writes metrics.json + predictions.parquet to out_dir.

    Returns a dict with ``headline`` (roadwork MCC at 0.5, lanes mIoU without background),
    ``metrics``, ``slices`` (weather/daytime/scene/city, plus confidence bins for roadwork and
    NATIX levels under that protocol), ``calibration`` and ``n``. Under ``protocol="natix"``
    the rows are a seeded validator query stream (``natix_queries`` long, default one per row;
    ``roadvision.evaluation.natix``) and ``natix`` holds the validator's reward, rolling MCC
    and accuracy and MCC@0.5 with its rounding.
    """
    from roadvision.models.bundle import bundle_version
    from roadvision.runtime.device import resolve_device
    from roadvision.runtime.inference import load_for_inference

    model = load_for_inference(bundle_dir, device=resolve_device(device))
    result, preds = evaluate_model(model, data_dir, split=split, tta=tta, protocol=protocol,
                                   batch_size=batch_size, seed=seed, natix_queries=natix_queries)
    result["bundle"] = {"path": Path(bundle_dir).name, "version": bundle_version(bundle_dir)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        preds.to_parquet(out / "predictions.parquet", index=False)
    return result


def evaluate_model(
    model: Any,
    data_dir: str | Path,
    split: str | None = "test",
    tta: str = "none",
    protocol: str | None = None,
    batch_size: int = 16,
    seed: int = 0,
    natix_queries: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Like :func:`evaluate` for an in-memory model, on the device it is on (in that
    device's precision policy, as serving runs it); returns (metrics, predictions frame)."""
    from roadvision.evaluation.natix import natix_hook, natix_level, natix_scores, natix_stream
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    if tta not in TTA_MODES:
        raise UserError(f"tta {tta!r} is not one of {TTA_MODES}")
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    task = model.cfg.task
    if protocol == "natix" and task != "roadwork":
        raise UserError("the NATIX protocol applies to roadwork models only")
    rows = load_rows(data_dir, None if split is None else [split])
    natix = protocol == "natix"
    if natix:  # the validator's query stream: label first (p = 0.5), then an image of it
        rows = rows.iloc[natix_stream(rows["label"].to_numpy(), natix_queries, seed)]
        rows = rows.reset_index(drop=True)
    ds = ManifestDataset(data_dir, rows, model.cfg,
                         image_hook=natix_hook(seed) if natix else None,
                         with_metadata=not natix)
    base = pd.DataFrame({"id": rows["id"].astype(str), "image": rows["image"].astype(str)})
    for col in META_COLUMNS:
        base[col] = rows[col]
    result: dict[str, Any] = {"task": task, "split": split, "tta": tta, "protocol": protocol,
                              "n": len(rows),
                              "calibration": {"temperature": model.cfg.temperature,
                                              "logit_bias": model.cfg.logit_bias,
                                              "threshold": model.cfg.threshold}}
    res = list(predict_dataset(model, ds, batch_size=batch_size, mode=tta))
    if task == "roadwork":
        probs = np.array([r["prob"] for r in res])
        labels = rows["label"].to_numpy().astype(int)
        thr = float(model.cfg.threshold)
        m = classification_metrics(labels, probs, threshold=thr)
        preds = base.assign(label=labels, prob=probs, pred=(probs >= thr).astype(int),
                            confidence=np.maximum(probs, 1 - probs))
        preds["correct"] = preds["pred"] == preds["label"]
        if natix:
            preds["natix_level"] = [natix_level(i, seed) for i in range(len(preds))]
        slices = classification_slices(preds)
        slices["confidence"] = confidence_slices(preds)
        if natix:
            slices.update(classification_slices(preds, ["natix_level"]))
            result["natix"] = natix_scores(labels, probs)
        result.update(headline=m["mcc"], headline_name="mcc@0.5", metrics=m, slices=slices,
                      reliability=reliability_bins(labels, probs, 10))
    else:
        n_cls = model.cfg.num_classes
        cms = np.stack([seg_confusion(r["mask"], r["pred"], n_cls) for r in res]) if res else \
            np.zeros((0, n_cls, n_cls), np.int64)
        m = segmentation_metrics(cms.sum(0), model.cfg.classes)
        preds = base.assign(
            iou=[image_lane_iou(r["mask"], r["pred"], n_cls) for r in res],
            confidence=[r["confidence"] for r in res],
            lane_pixels_true=[int((r["mask"] > 0).sum()) for r in res],
            lane_pixels_pred=[int((r["pred"] > 0).sum()) for r in res],
        )
        from roadvision.evaluation.vector_metrics import image_vector_lengths

        # traced once; the split's and every slice's polyline scores are sums of these
        vectors = image_vector_lengths(((r["mask"], r["pred"]) for r in res),
                                       model.cfg.classes, getattr(model, "bundle_config", None))
        result.update(headline=m["miou_no_bg"] if m["miou_no_bg"] is not None else 0.0,
                      headline_name="miou_no_bg", metrics=m,
                      slices=segmentation_slices(preds, cms, model.cfg.classes,
                                                 vectors=vectors))
        result["vector_metrics"] = vectors.summary()
    return result, preds
