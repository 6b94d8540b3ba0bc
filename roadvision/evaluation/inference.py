"""Batched inference over a dataset, shared by validation (training), evaluation and calibration.

Samples are batched in order; a batch is cut early when the next sample's tensors have another
shape (imported lane tiles may differ in size), so no padding ever reaches the metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

__all__ = ["to_device", "iter_batches", "predict_dataset", "autocast"]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device: torch.device):
    """bf16 autocast on CUDA only; CPU runs in fp32 (tests compare exact weights)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _shape_key(sample: dict[str, Any]) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in sorted(sample.items())
                 if isinstance(v, torch.Tensor) and k in ("image", "mask"))


def iter_batches(dataset: Any, batch_size: int) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """(indices, collated batch) in dataset order, never mixing tensor shapes in a batch."""
    from roadvision.models.preprocess import collate

    pending: list[tuple[int, dict[str, Any]]] = []
    for i in range(len(dataset)):
        sample = dataset[i]
        if pending and (len(pending) >= batch_size
                        or _shape_key(sample) != _shape_key(pending[0][1])):
            yield [j for j, _ in pending], collate([s for _, s in pending])
            pending = []
        pending.append((i, sample))
    if pending:
        yield [j for j, _ in pending], collate([s for _, s in pending])


@torch.no_grad()
def predict_dataset(
    model: torch.nn.Module,
    dataset: Any,
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    mode: str = "none",
) -> Iterator[dict[str, Any]]:
    """Yield one result per sample, in order.

    ``mode="logits"`` (roadwork): the raw, uncalibrated logit of a plain forward, for
    calibration fitting and training-time validation. Any other mode is a TTA mode for
    ``run_tta``: roadwork yields the calibrated ``prob``; lanes the argmax ``pred`` mask
    (and ``probs`` confidence = max class probability per image, averaged).
    Both yield the sample's ``label`` / ``mask`` when the dataset has it.
    """
    from roadvision.models.tta import run_tta

    device = torch.device(device)
    was_training = model.training
    model.eval()
    task = model.cfg.task
    try:
        for indices, batch in iter_batches(dataset, batch_size):
            batch = to_device(batch, device)
            with autocast(device):
                if mode == "logits":
                    out = model(batch)["logits"].float()
                else:
                    out = run_tta(model, batch, mode).float()
            out = out.cpu()
            for k, i in enumerate(indices):
                res: dict[str, Any] = {"index": i}
                if task == "roadwork":
                    res["logit" if mode == "logits" else "prob"] = float(out[k])
                    if "label" in batch:
                        res["label"] = int(batch["label"][k].item())
                else:
                    probs = out[k]
                    res["pred"] = probs.argmax(0).numpy().astype(np.uint8)
                    res["confidence"] = float(probs.max(0).values.mean())
                    if "mask" in batch:
                        res["mask"] = batch["mask"][k].cpu().numpy()
                yield res
    finally:
        model.train(was_training)
