"""``predict``: raw samples in, plain Python results out (used by evaluation and serving)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

from roadvision.errors import UserError

from .preprocess import collate
from .tta import run_tta

__all__ = ["predict", "predict_proba"]


def _groups(model: nn.Module, samples: list[dict], batch_size: int) -> list[list[int]]:
    """Sample indices batched together: lanes by tile size, roadwork all together."""
    if model.cfg.task == "lanes":
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            by_shape[tuple(s["image"].shape)].append(i)
        groups = list(by_shape.values())
    else:
        groups = [list(range(len(samples)))]
    return [g[i:i + batch_size] for g in groups for i in range(0, len(g), batch_size)]


def predict_proba(
    model: nn.Module, samples: list[dict[str, torch.Tensor]], tta: str = "none",
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """Per-sample calibrated probability (roadwork, scalar tensor) or class probabilities
    (lanes, [C, H, W]), in input order."""
    if not samples:
        return []
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(samples)
    try:
        for group in _groups(model, samples, batch_size):
            probs = run_tta(model, collate([samples[i] for i in group]), tta).cpu()
            for i, p in zip(group, probs, strict=True):
                out[i] = p
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def predict(
    model: nn.Module, samples: list[dict[str, torch.Tensor]], tta: str = "none",
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Predictions for samples made by ``prepare_sample(model.cfg, ...)``.

    Returns, per sample: roadwork ``{"probability": float, "label": int}`` (calibrated, label at
    ``cfg.threshold``); lanes ``{"mask": uint8 [H, W] class ids, "class_shares": {name: share
    of pixels}}``.
    """
    cfg = model.cfg
    results = []
    for p in predict_proba(model, samples, tta, batch_size):
        if cfg.task == "roadwork":
            prob = float(p)
            results.append({"probability": prob, "label": int(prob >= cfg.threshold)})
        else:
            mask = p.argmax(dim=0).to(torch.uint8).numpy()
            counts = np.bincount(mask.ravel(), minlength=cfg.num_classes)
            shares = counts / max(1, mask.size)
            results.append({"mask": mask,
                            "class_shares": {n: float(s) for n, s in zip(cfg.classes, shares,
                                                                        strict=True)}})
    return results
