"""The one batched inference path, with test-time augmentation, for every caller.

Two faces over the same steps:

- :func:`predict` / :func:`predict_proba`: a list of prepared samples in, plain results out
  (the serving predictor, batch prediction through ``roadvision.pyfunc_model``);
- :func:`predict_dataset`: a dataset in, one result per sample streamed out in order
  (training's validation, evaluation and so the gate, calibration, error analysis, benchmarks).

Both run :func:`iter_batches` (samples batched without mixing tensor shapes: imported lane tiles
differ in size, so no padding between samples ever reaches a result) and :func:`forward_batch`
(the batch on the model's device under the device's :class:`PrecisionPolicy`, lane tiles
smaller than the model window padded up to it, then ``run_tta``). A model therefore answers a
sample with the same probabilities whether it is evaluated, gated, served or batch-predicted.

Lanes probabilities become a class mask in one place, :func:`lane_mask`, with the bundle's
decision settings: per-class biases fitted on validation (``class_bias``, argmax of
``log p + bias``) and the removal of short isolated pieces (``min_segment_m`` metres at the
bundle's ``extra.gsd_m``). A bundle without them gets the plain argmax, as before.

A model that only answers (evaluation, the gate, serving, batch prediction) is loaded with
:func:`load_for_inference`: ``load_bundle`` plus its BatchNorms folded into the convolutions
(``roadvision.runtime.fuse``), the same answers from a shorter forward. A model that will be
trained or fine-tuned is loaded with ``load_bundle`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from roadvision.errors import UserError
from roadvision.geo.gsd import model_gsd
from roadvision.models.bundle import load_bundle
from roadvision.models.config import ModelConfig
from roadvision.models.preprocess import collate
from roadvision.models.tta import TTA_MODES, run_tta

from .fuse import fold_batchnorm
from .precision import PrecisionPolicy

__all__ = ["LOGITS", "MODES", "load_for_inference", "iter_batches", "forward_batch",
           "predict_proba", "predict", "predict_dataset", "lane_mask", "drop_short_segments",
           "model_gsd_m"]

LOGITS = "logits"  # the plain forward's raw, uncalibrated logits (calibration, validation)
MODES = (*TTA_MODES, LOGITS)
_TARGETS = ("label", "mask")  # batch keys the model never reads: they stay on the CPU


def load_for_inference(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The bundle at ``path`` rebuilt for answering only: ``load_bundle(path, device)`` (eval
    mode, on ``device``) with every BatchNorm that follows a convolution folded into it.

    The answers are the unfolded model's up to fp32 rounding; the forward is shorter. The
    model cannot be trained (its forward refuses train mode) and its state dict no longer fits
    the bundle: to fine-tune, distil into or re-save a model, use ``load_bundle``. Folding
    happens before the precision policy converts the memory format (``_inference``).
    """
    model = load_bundle(path, device=device)
    fold_batchnorm(model)
    return model


class SampleSource(Protocol):
    """What ``iter_batches`` reads: a torch map-style dataset, or a plain list of samples."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


def _shape_key(sample: dict[str, Any]) -> tuple:
    # Roadwork samples always batch together: ``collate`` pads their view counts.
    return tuple((k, tuple(v.shape)) for k, v in sorted(sample.items())
                 if isinstance(v, torch.Tensor) and k in ("image", "mask"))


def iter_batches(
    dataset: SampleSource, batch_size: int, order: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """(indices, collated batch) in ``order`` (default: dataset order); a batch is cut when it
    is full or when the next sample's tensors have another shape."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[tuple[int, dict[str, Any]]] = []
    for i in range(len(dataset)) if order is None else order:
        sample = dataset[i]
        if pending and (len(pending) >= batch_size
                        or _shape_key(sample) != _shape_key(pending[0][1])):
            yield [j for j, _ in pending], collate([s for _, s in pending])
            pending = []
        pending.append((i, sample))
    if pending:
        yield [j for j, _ in pending], collate([s for _, s in pending])


def _pad_to_window(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a [B, 3, H, W] tile up to ``size`` on each short side (zeros = the mean colour after
    normalisation, as TTA pads shrunk copies). A tile smaller than the model's input would
    otherwise reach the deepest stage as 1x1 features, where GroupNorm has one value per
    group and fails; the padded part is cropped off the output again."""
    pad_h, pad_w = max(0, size - image.shape[-2]), max(0, size - image.shape[-1])
    return F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image


@torch.inference_mode()
def forward_batch(
    model: nn.Module, batch: dict[str, Any], mode: str = "none",
    policy: PrecisionPolicy | None = None,
) -> torch.Tensor:
    """The one forward: ``batch`` (collated, on any device) through ``model`` (in eval mode).

    ``mode`` is a TTA mode of ``run_tta`` (calibrated probabilities: roadwork [B], lanes
    [B, C, H, W]) or ``"logits"`` (the plain forward's raw logits, same shapes). Lanes outputs
    have the input tile's size. Returns fp32 on the CPU. ``policy`` defaults to the one for
    the model's device; the faces pass it in so it is looked up once per call.
    """
    if mode not in MODES:
        raise UserError(f"unknown inference mode {mode!r}; expected one of {MODES}")
    policy = policy or PrecisionPolicy.for_model(model)
    inputs = {k: v for k, v in batch.items() if k not in _TARGETS}
    lanes = model.cfg.task == "lanes"
    if lanes:
        height, width = inputs["image"].shape[-2:]
        inputs["image"] = _pad_to_window(inputs["image"], int(model.cfg.input_size))
    inputs = policy.prepare_batch(inputs)
    with policy.autocast():
        out = model(inputs)["logits"] if mode == LOGITS else run_tta(model, inputs, mode)
    out = out.float()
    if lanes:
        out = out[..., :height, :width]
    return out.cpu()


def drop_short_segments(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """``mask`` (class ids [H, W]) with every lane piece (8-connected, per class) whose extent,
    the diagonal of its bounding box, is under ``min_pixels`` set to background. A piece
    touching the tile's edge is kept: it may go on outside (a dash cut by the tile border)."""
    import cv2  # OpenCV's labelling: in both the train and the serve extras (scipy is not)

    out = mask.copy()
    height, width = mask.shape
    for cls in np.unique(mask):
        if cls == 0:
            continue
        _, labels, stats, _ = cv2.connectedComponentsWithStats(
            (mask == cls).astype(np.uint8), connectivity=8)
        x, y, w, h = (stats[:, k] for k in range(4))
        edge = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
        short = (np.hypot(w, h) < min_pixels) & ~edge
        short[0] = False  # label 0: everything that is not this class
        if short.any():
            out[short[labels]] = 0
    return out


def lane_mask(probs: torch.Tensor, cfg: ModelConfig, gsd_m: float) -> np.ndarray:
    """Class ids (uint8 [H, W]) from class probabilities [C, H, W], with ``cfg``'s decision
    settings: argmax of ``log p + class_bias`` (plain argmax without biases), then pieces
    shorter than ``cfg.min_segment_m`` metres at ``gsd_m`` metres per pixel removed."""
    if cfg.class_bias:
        bias = torch.tensor(cfg.class_bias, dtype=torch.float32).view(-1, 1, 1)
        ids = (probs.float().clamp_min(1e-12).log() + bias).argmax(0)
    else:
        ids = probs.argmax(0)
    mask = ids.to(torch.uint8).numpy()
    if cfg.min_segment_m > 0:
        mask = drop_short_segments(mask, cfg.min_segment_m / gsd_m)
    return mask


def model_gsd_m(model: nn.Module) -> float:
    """The ground sample distance (m/px) a lanes model was trained at (``extra.gsd_m`` of a
    loaded bundle; ``roadvision.geo.gsd.DEFAULT_GSD`` for a model that records none)."""
    return model_gsd(getattr(model, "bundle_config", None) or {})[0]


@contextmanager
def _inference(model: nn.Module) -> Iterator[PrecisionPolicy]:
    """``model`` in eval mode and in its device's memory format for the block; the policy."""
    policy = PrecisionPolicy.for_model(model)
    policy.prepare_model(model)
    # eval() and train() each walk every module (4 ms the pair for the roadwork student on a
    # 2-core host, against a 33 ms forward): only a model in training mode pays for them; a
    # loaded one is in eval.
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield policy
    finally:
        if was_training:
            model.train()


def predict_proba(
    model: nn.Module, samples: list[dict[str, torch.Tensor]], tta: str = "none",
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """Per-sample calibrated probability (roadwork, scalar tensor) or class probabilities
    (lanes, [C, H, W]), in input order. Samples of one shape are batched together even when
    the list interleaves shapes (a lanes request mixing tile sizes)."""
    if not samples:
        return []
    out: list[torch.Tensor | None] = [None] * len(samples)
    order = sorted(range(len(samples)), key=lambda i: _shape_key(samples[i]))
    with _inference(model) as policy:
        for indices, batch in iter_batches(samples, batch_size, order):
            for i, p in zip(indices, forward_batch(model, batch, tta, policy), strict=True):
                out[i] = p
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
    gsd_m = model_gsd_m(model) if cfg.task == "lanes" else 0.0
    results = []
    for p in predict_proba(model, samples, tta, batch_size):
        if cfg.task == "roadwork":
            prob = float(p)
            results.append({"probability": prob, "label": int(prob >= cfg.threshold)})
        else:
            mask = lane_mask(p, cfg, gsd_m)
            counts = np.bincount(mask.ravel(), minlength=cfg.num_classes)
            shares = counts / max(1, mask.size)
            results.append({"mask": mask,
                            "class_shares": {n: float(s) for n, s in zip(cfg.classes, shares,
                                                                        strict=True)}})
    return results


def predict_dataset(
    model: nn.Module, dataset: SampleSource, *, batch_size: int = 16, mode: str = "none",
) -> Iterator[dict[str, Any]]:
    """Yield one result per sample, in order, with its ``index``, on the model's device.

    ``mode="logits"``: the raw, uncalibrated output of a plain forward, for calibration fitting
    and training-time validation (roadwork ``logit``: float; lanes ``logits``: [C, H, W]).
    Any other mode is a TTA mode for ``run_tta``: roadwork yields the calibrated ``prob``;
    lanes the ``pred`` mask (:func:`lane_mask`) and its ``confidence`` (max class probability
    per pixel, averaged over the tile). Both yield the sample's ``label`` / ``mask`` when it
    has one.
    """
    task = model.cfg.task
    gsd_m = model_gsd_m(model) if task == "lanes" else 0.0
    with _inference(model) as policy:
        for indices, batch in iter_batches(dataset, batch_size):
            out = forward_batch(model, batch, mode, policy)
            for k, i in enumerate(indices):
                res: dict[str, Any] = {"index": i}
                if task == "roadwork":
                    res["logit" if mode == LOGITS else "prob"] = float(out[k])
                    if "label" in batch:
                        res["label"] = int(batch["label"][k].item())
                else:
                    if mode == LOGITS:
                        res["logits"] = out[k].numpy()
                    else:
                        res["pred"] = lane_mask(out[k], model.cfg, gsd_m)
                        res["confidence"] = float(out[k].max(0).values.mean())
                    if "mask" in batch:
                        res["mask"] = batch["mask"][k].numpy()
                yield res
