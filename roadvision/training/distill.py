"""Distil an ensemble of bundles into one smaller student (Hinton et al., arXiv 1503.02531).

The teacher is the average of the members' *calibrated* probabilities (each member's own
temperature and bias applied), computed on the fly on exactly the student's augmented input
(each teacher gets its own ``prepare_sample`` of the same pixels, since the student may use
fewer or smaller views). The student minimises

    alpha * hard_loss + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``_T`` means both distributions softened at temperature ``T`` (binary for roadwork,
per pixel over classes for lanes). ``T^2`` keeps the soft term's gradient scale independent
of ``T``. Selection, checkpoints and resume are the normal training loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from roadvision.errors import UserError
from roadvision.runtime.device import resolve_device
from roadvision.runtime.precision import PrecisionPolicy
from roadvision.training.config import TrainConfig
from roadvision.training.datasets import MultiConfigDataset
from roadvision.training.loop import TrainResult, fit, seed_everything
from roadvision.training.train import build_datasets, build_model, dataset_extra

__all__ = ["distill", "teacher_probabilities", "soft_kl"]

_EPS = 1e-6


@torch.no_grad()
def teacher_probabilities(teachers: Sequence[torch.nn.Module],
                          batches: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Mean calibrated probability over the ensemble: roadwork [B], lanes [B, C, H, W]."""
    from roadvision.models.calibration import calibrated_probability

    probs = []
    for model, batch in zip(teachers, batches, strict=True):
        logits = model(batch)["logits"].float()
        if model.cfg.task == "roadwork":
            probs.append(calibrated_probability(logits, model.cfg))
        else:
            probs.append(torch.softmax(logits / float(model.cfg.temperature), dim=1))
    return torch.stack(probs).mean(0)


def soft_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
            ) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over samples (and pixels for lanes)."""
    t = float(temperature)
    s = student_logits.float()
    if s.ndim == 1:  # binary: Bernoulli KL on both classes
        p = teacher_probs.clamp(_EPS, 1 - _EPS)
        p_t = torch.sigmoid(torch.logit(p) / t)
        log_q1, log_q0 = F.logsigmoid(s / t), F.logsigmoid(-s / t)
        kl = (p_t * (torch.log(p_t) - log_q1) + (1 - p_t) * (torch.log1p(-p_t) - log_q0))
        return kl.mean() * t * t
    p_t = torch.softmax(torch.log(teacher_probs.clamp_min(_EPS)) / t, dim=1)
    log_q = F.log_softmax(s / t, dim=1)
    kl = (p_t * (torch.log(p_t.clamp_min(_EPS)) - log_q)).sum(1)
    return kl.mean() * t * t


def distill(teacher_bundles: Sequence[str | Path], data_dir: str | Path, out_dir: str | Path,
            cfg: TrainConfig) -> TrainResult:
    """Train ``cfg.preset`` (the student) against the ensemble of ``teacher_bundles``."""
    from roadvision.models.bundle import load_bundle
    from roadvision.models.losses import create_loss

    if not teacher_bundles:
        raise UserError("distill needs at least one teacher bundle")
    if cfg.preset is None:
        raise UserError("distill needs cfg.preset: the student's model preset")
    device = resolve_device(cfg.device)
    policy = PrecisionPolicy.for_device(device)  # the student's: the loop's autocast runs both
    teachers = [policy.prepare_model(load_bundle(p, device=device)) for p in teacher_bundles]
    seed_everything(cfg.seed, cfg.deterministic, device)
    student = build_model(data_dir, cfg)
    task = student.cfg.task
    for path, t in zip(teacher_bundles, teachers, strict=True):
        if t.cfg.task != task:
            raise UserError(f"teacher {path} is a {t.cfg.task} model; the student is {task}")
        if t.cfg.classes != student.cfg.classes:
            raise UserError(f"teacher {path} has classes {t.cfg.classes}, the student "
                            f"{student.cfg.classes}")
    for t in teachers:
        t.requires_grad_(False)
    train_ds, val_ds = build_datasets(data_dir, student.cfg, cfg)
    train_ds = MultiConfigDataset(train_ds, [t.cfg for t in teachers])
    hard = create_loss(task, **cfg.loss_weights)
    alpha, temp = cfg.distill_alpha, cfg.distill_temperature

    def loss_fn(outputs: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        hard_loss, parts = hard(outputs, batch)
        target = teacher_probabilities(teachers, batch["_teachers"])
        soft = soft_kl(outputs["logits"], target, temp)
        loss = alpha * hard_loss + (1 - alpha) * soft
        return loss, {**parts, "hard": float(hard_loss.detach()), "soft_kl": float(soft.detach())}

    extra = {**dataset_extra(data_dir),
             "distillation": {"teachers": [str(Path(p).name) for p in teacher_bundles],
                              "alpha": alpha, "temperature": temp}}
    return fit(student, train_ds, val_ds, cfg, out_dir, loss_fn, bundle_extra=extra)
