"""``predict``: raw samples in, plain Python results out (used by evaluation and serving)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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


def _pad_lanes(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a [B, 3, H, W] tile up to ``size`` on each short side (zeros = the mean colour after
    normalisation, as TTA pads shrunk copies). A tile smaller than the model's input would
    otherwise reach the deepest stage as 1x1 features, where GroupNorm has one value per
    group and fails; the padded part is cropped off the output again."""
    pad_h, pad_w = max(0, size - image.shape[-2]), max(0, size - image.shape[-1])
    return F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image


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
            batch = collate([samples[i] for i in group])
            if model.cfg.task == "lanes":
                height, width = batch["image"].shape[-2:]
                batch["image"] = _pad_lanes(batch["image"], int(model.cfg.input_size))
                probs = run_tta(model, batch, tta)[..., :height, :width].cpu()
            else:
                probs = run_tta(model, batch, tta).cpu()
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
