"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio`` x the peak.

Expressed per optimiser step (not per epoch) so gradient accumulation and
``max_steps_per_epoch`` change the schedule's length, never its shape.
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "create_scheduler"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int,
                  min_lr_ratio: float = 0.01) -> float:
    """LR multiplier at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
    min_lr_ratio: float = 0.01,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`warmup_cosine`; its ``state_dict`` is just the step count."""

    def factor(step: int) -> float:
        return warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
