"""Logit-averaging ensemble of models that share one preprocessing contract.

Members differ in seed, dropout, augmentation strength and learning rate (chosen by training);
averaging their logits (optionally weighted) is the teacher that distillation compresses into a
student, and a plain module so evaluation and TTA treat it like any single model. Members must
agree on task, classes and input geometry, otherwise one batch cannot feed them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from roadvision.errors import UserError

__all__ = ["LogitEnsemble"]

_SHARED_FIELDS = ("task", "classes", "input_size", "view_size", "num_views", "mean", "std")


class LogitEnsemble(nn.Module):
    """``forward(batch)`` -> ``{"logits": weighted mean of member logits}``.

    ``cfg`` is the first member's config (calibration included: calibrate the ensemble as a
    whole by setting ``ensemble.cfg.temperature`` / ``logit_bias``).
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        if not members:
            raise UserError("an ensemble needs at least one member")
        first = members[0].cfg
        for i, m in enumerate(members[1:], start=1):
            diff = [f for f in _SHARED_FIELDS if getattr(m.cfg, f) != getattr(first, f)]
            if diff:
                raise UserError(f"ensemble member {i} differs from member 0 in {diff}")
        weights = list(weights) if weights is not None else [1.0] * len(members)
        if len(weights) != len(members) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(f"ensemble weights {weights} must be {len(members)} values >= 0 "
                            "with a positive sum")
        self.members = nn.ModuleList(members)
        total = float(sum(weights))
        self.register_buffer("weights", torch.tensor([w / total for w in weights]))
        self.cfg = first.replace(preset=f"ensemble[{len(members)}]")

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = torch.stack([m(batch)["logits"].float() for m in self.members])
        w = self.weights.view(-1, *([1] * (logits.ndim - 1)))
        return {"logits": (logits * w).sum(0)}
