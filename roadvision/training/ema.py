"""An exponential moving average of the weights, validated and shipped instead of the raw ones.

The raw weights at the end of an epoch are one point of a noisy walk: which epoch wins on val,
and how well it scores on test, then depends on the last few batches. The average over the
last ~``1 / (1 - decay)`` optimiser steps is a smoother model (timm's ``ModelEmaV3``, Polyak
averaging). Early in a run the average would be dominated by the random start, so the decay
warms up as ``min(decay, (1 + step) / (10 + step))``: after step ``s`` it holds about the
last ``s / 10`` steps' weights, reaching ``decay`` after ``9 / (1 - decay)`` steps.

Float parameters and buffers (BatchNorm running statistics) are averaged; integer buffers
(``num_batches_tracked``) are copied. The average lives on the model's device and is
checkpointed with the run, so a resumed run is still bit-identical.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightEma"]


class WeightEma:
    """The moving average of ``model``'s weights, as a model of its own (``.module``)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (warmed up from 0.1 towards ``decay``)."""
        return min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's weights after an optimiser step into the average."""
        d = self.current_decay()
        avg = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                avg[name].lerp_(value.detach(), 1.0 - d)
            else:
                avg[name].copy_(value)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = int(state["steps"])
