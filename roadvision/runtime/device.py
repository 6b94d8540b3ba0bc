"""Which device a run uses, and moving batches onto it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from roadvision.errors import UserError

__all__ = ["resolve_device", "model_device", "to_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when present, else CPU) or an explicit torch device name; a CUDA name
    on a machine without CUDA is a UserError rather than a crash deep inside the first forward."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters live on (a model without parameters runs on CPU)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
