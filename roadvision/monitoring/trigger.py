"""Should drift retrain the model? Thresholds on one drift check -> a decision with its reason.

The drift check (``compare``) flags input drift when the embedding MMD's permutation p-value is
below ``alpha``; that flag alone is a reason to look, not always to spend a training run. The
policy adds what an operator wants before one starts: enough logged rows that the check means
something, an optional stricter p-value, and (off by default) prediction drift as a reason of
its own. Plain Python: the CLI submits the training pipeline when the decision says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from roadvision.errors import UserError

from .drift import DriftResult

__all__ = ["RetrainPolicy", "RetrainDecision", "decide_retrain"]


@dataclass
class RetrainPolicy:
    min_rows: int = 50  # fewer logged rows than this never start a training run
    max_p_value: float | None = None  # input drift must also reach p <= this (None: alpha)
    on_prediction_drift: bool = False  # a drifted prediction test alone is a reason too

    def __post_init__(self) -> None:
        if self.min_rows < 2:
            raise UserError(f"retrain min_rows must be >= 2, got {self.min_rows}")
        if self.max_p_value is not None and not 0 < self.max_p_value < 1:
            raise UserError(f"retrain max_p_value must be in (0, 1), got {self.max_p_value}")


@dataclass
class RetrainDecision:
    retrain: bool
    reason: str


def decide_retrain(result: DriftResult, policy: RetrainPolicy | None = None) -> RetrainDecision:
    """Retrain when the check found drift the policy accepts as a reason, else say why not."""
    policy = policy or RetrainPolicy()
    if result.n_current < policy.min_rows:
        return RetrainDecision(False, f"{result.n_current} logged rows, fewer than the "
                                      f"{policy.min_rows} a retraining needs")
    reasons = []
    test = result.input
    if result.drifted and test is not None:
        limit = policy.max_p_value if policy.max_p_value is not None else result.alpha
        if test.p_value <= limit:
            reasons.append(f"input drift ({test.name} p {test.p_value:.4g} <= {limit:g})")
        else:
            return RetrainDecision(False, f"input drift at p {test.p_value:.4g}, above the "
                                          f"retraining threshold {limit:g}")
    if policy.on_prediction_drift:
        reasons += [f"prediction drift ({t.name} p {t.p_value:.4g})"
                    for t in result.prediction if t.drifted]
    if not reasons:
        return RetrainDecision(False, "no drift that the retraining policy acts on")
    return RetrainDecision(True, "; ".join(reasons))
