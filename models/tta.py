"""Test-time augmentation shared by evaluation and serving, merged into one batched forward.

``run_tta(model, batch, mode)`` with mode
- ``"none"``: exactly the plain forward plus calibration (roadwork: sigmoid(logit / T + bias);
  lanes: softmax(logits / T));
- ``"flip"``: the input and its horizontal mirror (lanes outputs are un-flipped);
- ``"full"``: flip x scales (0.75, 1.0, 1.25). Roadwork views are zoomed in (centre crop of the
  enlarged view) or out (the shrunk view padded with the mean colour) so that every copy keeps
  the view size; large roadwork images are already seen as multiple crops by the multi-view
  input, which is the multi-crop part. Lanes copies are rescaled tiles.

All copies of a batch are concatenated and sent through the model in ONE forward (``max_batch``
splits it only to bound memory). Copies are merged with confidence weights: a copy counts in
proportion to how sure it is (``|p - 0.5|`` for roadwork, the max class probability per pixel
for lanes), so one unsure view of a flipped or rescaled input cannot drown confident ones.

Lanes tiles larger than ``cfg.input_size`` are cut into overlapping windows (a third overlap)
whose softmax probabilities are averaged where they overlap (sliding-window inference); the
windows of all copies go into the same forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadvision.errors import UserError

from .calibration import calibrated_probability

__all__ = ["run_tta", "TTA_MODES", "SCALES", "sliding_window_starts", "tta_copies"]

TTA_MODES = ("none", "flip", "full")
SCALES = (0.75, 1.0, 1.25)  # "full" mode scales
_CONF_EPS = 1e-3  # keeps confidence weights positive when every copy says exactly 0.5


def tta_copies(mode: str) -> list[tuple[float, bool]]:
    """(scale, flipped) for every augmented copy of ``mode``; the identity comes first."""
    if mode not in TTA_MODES:
        raise UserError(f"unknown TTA mode {mode!r}; expected one of {TTA_MODES}")
    scales = SCALES if mode == "full" else (1.0,)
    flips = (False, True) if mode in ("flip", "full") else (False,)
    copies = [(s, f) for s in scales for f in flips]
    return sorted(copies, key=lambda c: (c != (1.0, False)))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _forward(model: nn.Module, batch: dict, key: str, max_batch: int | None) -> torch.Tensor:
    """model(batch)[key], in chunks of ``max_batch`` rows when given."""
    n = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
    if not max_batch or n <= max_batch:
        return model(batch)[key]
    parts = []
    for start in range(0, n, max_batch):
        chunk = {k: v[start:start + max_batch] if isinstance(v, torch.Tensor) else v
                 for k, v in batch.items()}
        parts.append(model(chunk)[key])
    return torch.cat(parts)


def _merge(probs: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Confidence-weighted mean over dim 0 (the copies)."""
    if probs.shape[0] == 1:
        return probs[0]
    weight = confidence + _CONF_EPS
    return (probs * weight).sum(0) / weight.sum(0)


@torch.inference_mode()
def run_tta(
    model: nn.Module, batch: dict[str, torch.Tensor], mode: str = "none",
    max_batch: int | None = None,
) -> torch.Tensor:
    """Predict with test-time augmentation.

    Returns:
        roadwork: calibrated probabilities [B]; lanes: class probabilities [B, C, H, W].
    """
    copies = tta_copies(mode)
    batch = _to(batch, _device(model))
    if model.cfg.task == "roadwork":
        return _roadwork(model, batch, copies, max_batch)
    return _lanes(model, batch["image"], copies, max_batch)


# --- roadwork -------------------------------------------------------------------------------

def _zoom(views: torch.Tensor, scale: float) -> torch.Tensor:
    """Zoom [B, V, 3, S, S] views by ``scale`` keeping size S (crop or pad with zeros = mean)."""
    if scale == 1.0:
        return views
    b, v, c, s, _ = views.shape
    size = max(1, round(s * scale))
    x = F.interpolate(views.flatten(0, 1), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=scale < 1)
    if size >= s:
        top = (size - s) // 2
        x = x[..., top:top + s, top:top + s]
    else:
        before = (s - size) // 2
        x = F.pad(x, (before, s - size - before, before, s - size - before))
    return x.reshape(b, v, c, s, s)


def _roadwork(model, batch, copies, max_batch) -> torch.Tensor:
    views = batch["views"]
    n = len(copies)
    merged = {k: torch.cat([v] * n) if isinstance(v, torch.Tensor) else v
              for k, v in batch.items() if k != "views"}
    merged["views"] = torch.cat(
        [_zoom(views.flip(-1) if flip else views, scale) for scale, flip in copies]
    )
    logits = _forward(model, merged, "logits", max_batch)
    probs = calibrated_probability(logits, model.cfg).view(n, -1)
    return _merge(probs, (probs - 0.5).abs())


# --- lanes ----------------------------------------------------------------------------------

def sliding_window_starts(length: int, window: int, overlap: float = 1 / 3) -> list[int]:
    """Window start offsets covering ``length`` with ``window``-sized, overlapping windows."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1 - overlap)))
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def _lanes(model, image: torch.Tensor, copies, max_batch) -> torch.Tensor:
    b, _, h, w = image.shape
    win = int(model.cfg.input_size)
    win_h, win_w = min(win, h), min(win, w)
    crops, plan, canvases = [], [], []
    for index, (scale, flip) in enumerate(copies):
        x = image.flip(-1) if flip else image
        if scale != 1.0:
            x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                              mode="bilinear", align_corners=False, antialias=scale < 1)
        sh, sw = x.shape[-2:]
        # Pad a shrunk copy up to the window (zeros = the mean colour after normalisation).
        x = F.pad(x, (0, max(0, win_w - sw), 0, max(0, win_h - sh)))
        canvases.append((sh, sw, x.shape[-2], x.shape[-1]))
        for top in sliding_window_starts(x.shape[-2], win_h):
            for left in sliding_window_starts(x.shape[-1], win_w):
                crops.append(x[..., top:top + win_h, left:left + win_w])
                plan.append((index, top, left))

    logits = _forward(model, {"image": torch.cat(crops)}, "logits", max_batch)
    # Lanes calibration is a temperature only (fitted by evaluation.calibrate; 1.0 by default).
    probs = (logits.float() / float(model.cfg.temperature)).softmax(dim=1).split(b)

    if len(plan) == 1:  # a single plain window: exactly the plain forward's softmax
        return probs[0]
    num_classes = probs[0].shape[1]
    sums = [image.new_zeros(b, num_classes, ph, pw, dtype=torch.float32)
            for _, _, ph, pw in canvases]
    counts = [image.new_zeros(1, 1, ph, pw, dtype=torch.float32) for _, _, ph, pw in canvases]
    for (index, top, left), p in zip(plan, probs, strict=True):
        sums[index][..., top:top + win_h, left:left + win_w] += p
        counts[index][..., top:top + win_h, left:left + win_w] += 1
    outputs = []
    for (scale, flip), total, count, (sh, sw, _, _) in zip(copies, sums, counts, canvases,
                                                          strict=True):
        p = (total / count)[..., :sh, :sw]
        if scale != 1.0:
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        outputs.append(p.flip(-1) if flip else p)
    stacked = torch.stack(outputs)
    return _merge(stacked, stacked.max(dim=2, keepdim=True).values)
