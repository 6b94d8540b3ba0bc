"""Distil an ensemble of bundles into one smaller student (Hinton et al., arXiv 1503.02531).

The teacher is the average of the members' *calibrated* probabilities (each member's own
temperature and bias applied). The student minimises, per training row,

    alpha * hard_loss * [row is labelled] + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``_T`` means both distributions softened at temperature ``T`` (binary for roadwork,
per pixel over classes for lanes). ``T^2`` keeps the soft term's gradient scale independent
of ``T``. Rows of the unlabelled pool (``cfg.distill_unlabelled``, ``distill_pool``) join the
labelled train split with the soft term only: their hard term is masked out.

The teachers' targets come either from a cache (``cfg.distill_targets="cache"``, the roadwork
default: each teacher runs once per image, ``teacher_cache``) or on the fly on exactly the
student's augmented input (``"online"``, the lanes default: per-pixel targets must follow the
crop; each teacher gets its own ``prepare_sample`` of the same pixels, since the student may
use fewer or smaller views). Selection, checkpoints and resume are the normal training loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from roadvision.errors import UserError
from roadvision.progress import emit
from roadvision.runtime.dataset import ManifestDataset
from roadvision.runtime.device import resolve_device
from roadvision.runtime.precision import PrecisionPolicy
from roadvision.runtime.readers import load_rows
from roadvision.training.config import TrainConfig
from roadvision.training.datasets import TrainingDataset
from roadvision.training.distill_pool import PoolDataset, pool_rows
from roadvision.training.loop import TrainResult, fit, seed_everything
from roadvision.training.teacher_cache import cache_key, cached_probabilities
from roadvision.training.train import build_datasets, build_loss, build_model, dataset_extra

__all__ = ["distill", "teacher_probabilities", "soft_kl", "distill_loss", "DistillDataset"]

_EPS = 1e-6
UNLABELLED = "_unlabelled"  # batch key: True for pool rows (no hard-label loss)
SOFT = "_soft"  # batch key: cached teacher probabilities


def member_probability(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """One member's calibrated probability: roadwork [B], lanes [B, C, H, W]."""
    from roadvision.models.calibration import calibrated_probability

    logits = model(batch)["logits"].float()
    if model.cfg.task == "roadwork":
        return calibrated_probability(logits, model.cfg)
    return torch.softmax(logits / float(model.cfg.temperature), dim=1)


@torch.no_grad()
def teacher_probabilities(teachers: Sequence[torch.nn.Module],
                          batches: Sequence[dict[str, Any]]) -> torch.Tensor:
    """Mean calibrated probability over the ensemble: roadwork [B], lanes [B, C, H, W]."""
    probs = [member_probability(m, b) for m, b in zip(teachers, batches, strict=True)]
    return torch.stack(probs).mean(0)


def soft_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
            ) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over samples (and pixels for lanes)."""
    t = float(temperature)
    s = student_logits.float()
    if s.ndim == 1:  # binary: Bernoulli KL on both classes
        p = teacher_probs.float().clamp(_EPS, 1 - _EPS)
        p_t = torch.sigmoid(torch.logit(p) / t)
        log_q1, log_q0 = F.logsigmoid(s / t), F.logsigmoid(-s / t)
        kl = (p_t * (torch.log(p_t) - log_q1) + (1 - p_t) * (torch.log1p(-p_t) - log_q0))
        return kl.mean() * t * t
    p_t = torch.softmax(torch.log(teacher_probs.float().clamp_min(_EPS)) / t, dim=1)
    log_q = F.log_softmax(s / t, dim=1)
    kl = (p_t * (torch.log(p_t.clamp_min(_EPS)) - log_q)).sum(1)
    return kl.mean() * t * t


def _rows(value: Any, keep: torch.Tensor, size: int) -> Any:
    """``value`` with only the ``keep`` rows of every tensor whose first dimension is the batch."""
    if isinstance(value, torch.Tensor):
        return value[keep] if value.ndim and value.shape[0] == size else value
    if isinstance(value, dict):
        return {k: _rows(v, keep, size) for k, v in value.items()}
    return value


def distill_loss(hard: Any, outputs: dict[str, Any], batch: dict[str, Any],
                 target: torch.Tensor, alpha: float, temperature: float
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """``alpha * share * hard(labelled rows) + (1 - alpha) * soft(all rows)``: the hard term is
    computed on the labelled rows only (``share`` = their fraction of the batch, so that each
    row weighs the same as in a per-row sum) and pool rows learn from ``target`` alone."""
    logits = outputs["logits"]
    size = logits.shape[0]
    pool = batch.get(UNLABELLED)
    labelled = torch.ones(size, dtype=torch.bool, device=logits.device) if pool is None \
        else ~pool.to(logits.device).bool()
    n_labelled = int(labelled.sum())
    parts: dict[str, float] = {}
    if n_labelled == size:
        hard_loss, parts = hard(outputs, batch)
    elif n_labelled:
        hard_loss, parts = hard(_rows(outputs, labelled, size), _rows(batch, labelled, size))
    else:  # an all-pool batch: no hard term, and the graph still reaches every head
        hard_loss = logits.sum() * 0.0
    share = n_labelled / size
    soft = soft_kl(logits, target, temperature)
    loss = alpha * share * hard_loss + (1 - alpha) * soft
    return loss, {**parts, "hard": float(hard_loss.detach()), "soft_kl": float(soft.detach()),
                  "labelled_share": share}


class DistillDataset(Dataset):
    """The labelled train rows, then the pool's, each sample tagged ``_unlabelled`` and carrying
    either its cached teacher probability (``_soft``) or the teachers' own inputs of the same
    augmented image (``_teachers``, as ``datasets.MultiConfigDataset`` gives them)."""

    def __init__(self, labelled: TrainingDataset, pool: PoolDataset | None,
                 teacher_cfgs: Sequence[Any], soft: np.ndarray | None) -> None:
        self.labelled, self.pool = labelled, pool
        self.teacher_cfgs = list(teacher_cfgs)
        self.soft = soft
        if soft is not None and len(soft) != len(self):
            raise ValueError(f"{len(soft)} cached targets for {len(self)} rows")

    def __len__(self) -> int:
        return len(self.labelled) + (len(self.pool) if self.pool is not None else 0)

    def _parts(self) -> list[TrainingDataset]:
        return [self.labelled] + ([self.pool] if self.pool is not None else [])

    def set_epoch(self, epoch: int) -> None:
        for part in self._parts():
            part.set_epoch(epoch)

    def weights(self) -> np.ndarray | None:
        w = self.labelled.weights()
        if w is None or self.pool is None:
            return w  # uniform labelled rows stay uniform with the pool
        return np.concatenate([w, np.full(len(self.pool), w.mean())])

    def families(self) -> list[str] | None:
        found = [part.families() for part in self._parts()]
        return None if any(f is None for f in found) else [x for f in found for x in f]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, tuple):  # (epoch, index) from persistent workers
            self.set_epoch(index[0])
            index = int(index[1])
        is_pool = index >= len(self.labelled)
        part = self.pool if is_pool else self.labelled
        local = index - len(self.labelled) if is_pool else index
        image, mask, metadata = part.load(local)
        sample = part.make_sample(part.cfg, image, mask, metadata, local)
        sample[UNLABELLED] = torch.tensor(is_pool)
        if self.soft is not None:
            sample[SOFT] = torch.tensor(float(self.soft[index]))
        else:
            sample["_teachers"] = [part.make_sample(c, image, mask, metadata, local)
                                   for c in self.teacher_cfgs]
        return sample


def _cached_targets(teachers: Sequence[torch.nn.Module], sources: Sequence[tuple[Any, ...]],
                    batch_size: int, policy: PrecisionPolicy) -> np.ndarray:
    """Mean calibrated teacher probability of every un-augmented row of ``sources``
    (``(dataset class, folder, rows)`` in the training set's order); each teacher runs once."""
    from roadvision.runtime.inference import iter_batches

    total = []
    for teacher in teachers:
        probs = []
        for kind, folder, rows in sources:
            ds = kind(folder, rows, teacher.cfg)
            for _, batch in iter_batches(ds, batch_size):
                with torch.no_grad(), policy.autocast():
                    probs.append(member_probability(teacher, policy.prepare_batch(batch)).cpu())
        total.append(torch.cat(probs))
    return torch.stack(total).mean(0).numpy()


def _targets_mode(cfg: TrainConfig, task: str) -> str:
    if cfg.distill_targets == "auto":
        return "cache" if task == "roadwork" else "online"
    if cfg.distill_targets == "cache" and task != "roadwork":
        raise UserError("distill_targets='cache' is for roadwork: per-pixel lane targets must "
                        "follow each epoch's random crop; use 'online'")
    return cfg.distill_targets


def distill(teacher_bundles: Sequence[str | Path], data_dir: str | Path, out_dir: str | Path,
            cfg: TrainConfig) -> TrainResult:
    """Train ``cfg.preset`` (the student) against the ensemble of ``teacher_bundles``, on the
    labelled train split plus the unlabelled pool ``cfg.distill_unlabelled`` (if any)."""
    from roadvision.models.bundle import load_bundle

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
        t.eval()
    mode = _targets_mode(cfg, task)
    train_ds, val_ds = build_datasets(data_dir, student.cfg, cfg)
    sources: list[tuple[Any, ...]] = [(ManifestDataset, Path(data_dir), train_ds.rows)]
    pool = None
    if cfg.distill_unlabelled:
        folder, rows = pool_rows(cfg.distill_unlabelled, task, out_dir, load_rows(data_dir, None))
        pool = PoolDataset(folder, rows, student.cfg, augment=cfg.augment,
                           crop_size=cfg.crop_size, seed=cfg.seed + 1,
                           appearance=cfg.appearance)
        sources.append((PoolDataset, folder, rows))
    soft, reused = None, False
    if mode == "cache":
        ids = [str(i) for _, _, rows in sources for i in rows["id"]]
        soft, reused = cached_probabilities(
            out_dir, cache_key(teacher_bundles, ids),
            lambda: _cached_targets(teachers, sources, cfg.eval_batch_size or cfg.batch_size,
                                    policy))
        emit(f"teacher targets: {'reused from' if reused else 'computed once into'} "
             f"{Path(out_dir).name}/teacher_probs.npz ({len(soft)} images)")
    train_set = DistillDataset(train_ds, pool, [t.cfg for t in teachers], soft)
    hard = build_loss(student, cfg)
    alpha, temp = cfg.distill_alpha, cfg.distill_temperature

    def loss_fn(outputs: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        target = batch[SOFT] if SOFT in batch else \
            teacher_probabilities(teachers, batch["_teachers"])
        return distill_loss(hard, outputs, batch, target, alpha, temp)

    extra = {**dataset_extra(data_dir),
             "distillation": {"teachers": [str(Path(p).name) for p in teacher_bundles],
                              "alpha": alpha, "temperature": temp, "targets": mode,
                              "labelled_rows": len(train_ds),
                              "unlabelled_rows": len(pool) if pool is not None else 0,
                              "unlabelled": cfg.distill_unlabelled}}
    return fit(student, train_set, val_ds, cfg, out_dir, loss_fn, bundle_extra=extra)
