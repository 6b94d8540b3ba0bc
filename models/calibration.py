"""Apply a bundle's calibration to raw roadwork logits.

``p = sigmoid(logit / temperature + logit_bias)``: temperature scaling (Guo et al. 2017) fixes
over-confidence without moving the ranking; the bias moves the decision boundary so that the
fixed 0.5 threshold (the NATIX validator's) lands where validation MCC is best. Both are fitted
by ``roadvision.evaluation.calibrate``; this module only applies them.
"""

from __future__ import annotations

import torch

from .config import ModelConfig

__all__ = ["calibrated_logits", "calibrated_probability"]


def calibrated_logits(logits: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    return logits.float() / float(cfg.temperature) + float(cfg.logit_bias)


def calibrated_probability(logits: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Raw logits [B] -> calibrated probabilities [B] (float32)."""
    return torch.sigmoid(calibrated_logits(logits, cfg))
