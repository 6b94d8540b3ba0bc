"""The one precision policy: how a forward runs on a given device.

Training, validation, evaluation, calibration, the gate's evaluation, the serving predictor and
batch prediction all take their precision from :meth:`PrecisionPolicy.for_device`, so the
model the gate scores answers in the same precision when it is served:

- CUDA: bf16 autocast (tensor cores; the weights stay fp32) and channels-last weights and
  images (the layout cuDNN's convolutions run fastest in);
- CPU: fp32 and contiguous tensors. bf16 on CPU is slower than fp32 on most cores, and CPU
  runs must stay bit-reproducible (tests compare exact weights after a resumed run).

Outputs always leave the forward as fp32 (``roadvision.runtime.inference``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .device import model_device, to_device

__all__ = ["PrecisionPolicy"]


@dataclass(frozen=True)
class PrecisionPolicy:
    """Autocast dtype and memory format for forwards on ``device``; build it with
    :meth:`for_device` (or :meth:`for_model`), never by hand, so every caller agrees."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: no autocast, the forward runs in fp32
    channels_last: bool  # weights and [B, 3, H, W] images in channels-last layout

    @classmethod
    def for_device(cls, device: torch.device | str) -> PrecisionPolicy:
        """The policy for ``device`` (a torch.device or a name such as ``"cuda:0"``)."""
        device = torch.device(device)
        if device.type == "cuda":
            return cls(device=device, autocast_dtype=torch.bfloat16, channels_last=True)
        return cls(device=device, autocast_dtype=None, channels_last=False)

    @classmethod
    def for_model(cls, model: nn.Module) -> PrecisionPolicy:
        """The policy for the device ``model``'s parameters live on."""
        return cls.for_device(model_device(model))

    def describe(self) -> str:
        """For people: ``"bfloat16 autocast, channels-last"`` on CUDA, ``"fp32"`` on CPU."""
        if self.autocast_dtype is None:
            text = "fp32"
        else:
            text = f"{str(self.autocast_dtype).removeprefix('torch.')} autocast"
        return text + (", channels-last" if self.channels_last else "")

    def autocast(self) -> AbstractContextManager:
        """The context a forward (and, in training, its loss) runs in."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Put ``model``'s weights in this policy's memory format (in place; returned too).

        Cheap when already done (one layout check), so every inference call may ask. Call it
        outside ``torch.inference_mode``: the converted weights must stay usable for training.
        """
        if self.channels_last and not _is_channels_last(model):
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_batch(self, batch: Any) -> Any:
        """``batch`` on this policy's device, its images (every ``"image"`` [B, 3, H, W],
        distillation teachers' included) in its memory format."""
        batch = to_device(batch, self.device)
        return _images_channels_last(batch) if self.channels_last else batch


def _is_channels_last(model: nn.Module) -> bool:
    # The first weight whose layout tells the formats apart stands for all (``prepare_model``
    # converts them together). 1x1 and depthwise kernels are both layouts at once: skip them.
    for param in model.parameters():
        if param.dim() == 4 and param.shape[1] > 1 and param.shape[2] * param.shape[3] > 1:
            return param.is_contiguous(memory_format=torch.channels_last)
    return True  # no weight where the layout matters: nothing to convert


def _images_channels_last(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: v.contiguous(memory_format=torch.channels_last)
                if k == "image" and isinstance(v, torch.Tensor) and v.dim() == 4
                else _images_channels_last(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_images_channels_last(v) for v in batch)
    return batch
