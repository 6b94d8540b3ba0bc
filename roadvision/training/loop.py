"""The training loop, one for both tasks (and for distillation, through ``loss_fn``).

AdamW with linear warmup + cosine decay per optimiser step, gradient accumulation, gradient
clipping, early stopping on a threshold-free validation figure (roadwork AUROC, lanes soft IoU
without background: a thresholded one such as MCC at 0.5 jumps with a few images near the
threshold and picks epochs by noise), optionally an EMA of the weights (``ema_decay``,
``training.ema``: the average is then what is validated and bundled), a seeded GPS-weighted
sampler, the device's precision policy (``roadvision.runtime.precision``: bf16 autocast and
channels-last on CUDA only, as evaluation and serving run), optional ``torch.compile``,
progress (a bar on a terminal; everywhere a line per epoch with the metric and an ETA, and one
at least every 20 s), per-epoch metrics to ``history.json`` and to MLflow when a run is active.
A checkpoint after every epoch makes a killed run resumable with bit-identical results on CPU.
Only the train and val splits are ever read.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from roadvision.metrics import classification_metrics, seg_confusion, segmentation_metrics
from roadvision.progress import EpochProgress, track
from roadvision.runtime.device import resolve_device
from roadvision.runtime.inference import LOGITS, predict_dataset
from roadvision.runtime.precision import PrecisionPolicy
from roadvision.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from roadvision.training.config import TrainConfig
from roadvision.training.ema import WeightEma
from roadvision.training.family_sampler import FamilySampler
from roadvision.training.freeze import apply_freeze, release_encoder
from roadvision.training.loader import train_loader
from roadvision.training.sampler import ResumableSampler
from roadvision.training.schedule import create_scheduler

__all__ = ["TrainResult", "fit", "validate", "collate_batch", "seed_everything"]

LossFn = Callable[[dict[str, Any], dict[str, Any]], tuple[torch.Tensor, dict[str, float]]]
#: Called with each epoch's history record once the epoch is checkpointed; an exception it
#: raises (a sweep's ``optuna.TrialPruned``) ends the run there, resumable as any other stop.
EpochCallback = Callable[[dict[str, Any]], None]
BUNDLE_DIR = "bundle"
HISTORY = "history.json"


@dataclass
class TrainResult:
    """What a run leaves behind: the best model's bundle, per-epoch history, best val metric."""

    bundle_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = float("-inf")
    best_epoch: int = -1
    stopped_early: bool = False
    finished: bool = True  # False when stop_after_epochs ended the call before cfg.epochs


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def collate_batch(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``roadvision.models.preprocess.collate`` plus distillation teachers' inputs."""
    from roadvision.models.preprocess import collate

    teachers = [s.pop("_teachers") for s in samples] if "_teachers" in samples[0] else None
    batch = collate(samples)
    if teachers is not None:
        batch["_teachers"] = [collate([t[k] for t in teachers]) for k in range(len(teachers[0]))]
    return batch


def validate(model: torch.nn.Module, dataset: Any, batch_size: int) -> dict[str, Any]:
    """Validation metrics on the model's device; ``headline`` is the selection metric (higher
    is better) and needs no threshold: roadwork AUROC of the raw logits (minus the val log
    loss when val holds one class and AUROC is undefined), lanes soft IoU without background
    (softmax probabilities against the mask). The thresholded figures (MCC at 0.5, hard IoU)
    are reported beside it; calibration is fitted after training.
    """
    task = model.cfg.task
    if task == "roadwork":
        res = list(predict_dataset(model, dataset, batch_size=batch_size, mode=LOGITS))
        labels = np.array([r["label"] for r in res])
        logits = np.array([r["logit"] for r in res], dtype=np.float64)
        probs = 1.0 / (1.0 + np.exp(-logits))
        m = classification_metrics(labels, probs)
        # BCE with logits, computed stably: log(1 + e^z) - y z
        nll = float(np.mean(np.logaddexp(0.0, logits) - labels * logits)) if len(res) else 0.0
        headline = m["auroc"] if m["auroc"] is not None else -nll
        return {"headline": headline, "nll": nll,
                **{k: m[k] for k in ("mcc", "accuracy", "f1", "auroc", "ece")}}
    n = model.cfg.num_classes
    cm = np.zeros((n, n), np.int64)
    inter, union = np.zeros(n), np.zeros(n)
    for r in predict_dataset(model, dataset, batch_size=batch_size, mode=LOGITS):
        z = r["logits"] - r["logits"].max(0, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(0, keepdims=True)  # [C, H, W]
        onehot = np.eye(n, dtype=np.float64)[r["mask"]].transpose(2, 0, 1)
        inter += (p * onehot).sum((1, 2))
        union += (p + onehot - p * onehot).sum((1, 2))
        cm += seg_confusion(r["mask"], r["logits"].argmax(0).astype(np.uint8), n)
    m = segmentation_metrics(cm, model.cfg.classes)
    lanes = [c for c in range(1, n) if union[c] > 0]
    soft = float(np.mean(inter[lanes] / union[lanes])) if lanes else 0.0
    out = {"headline": soft, "soft_iou_no_bg": soft, "miou": m["miou"],
           "miou_no_bg": m["miou_no_bg"]}
    out.update({f"iou_{k}": v for k, v in m["per_class_iou"].items()})
    return out


def _log_mlflow(metrics: dict[str, Any], step: int) -> None:
    """Log to the active MLflow run, if any (mlflow is only imported when a run may exist)."""
    if "mlflow" not in sys.modules and not os.environ.get("MLFLOW_RUN_ID"):
        return
    import mlflow

    values = {k: float(v) for k, v in metrics.items()
              if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    if mlflow.active_run() is not None:
        mlflow.log_metrics(values, step=step)
    elif os.environ.get("MLFLOW_RUN_ID"):
        with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
            mlflow.log_metrics(values, step=step)


def _run_label() -> str:
    """The name progress lines carry: the active MLflow run's (a pipeline step names its run
    after itself, ``train-member-1``, so that two members training at once stay apart)."""
    if "mlflow" in sys.modules:
        import mlflow

        run = mlflow.active_run()
        if run is not None and run.info.run_name:
            return run.info.run_name
    return "train"


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # no weight decay on biases, norms, embeddings' 1-D params: decaying them only hurts
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(
    model: torch.nn.Module,
    train_ds: Any,
    val_ds: Any,
    cfg: TrainConfig,
    out_dir: str | Path,
    loss_fn: LossFn,
    *,
    bundle_extra: dict[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_ds``, select on ``val_ds``, write ``out_dir/bundle``.

    Resumes from ``out_dir/checkpoint`` when present. ``loss_fn(outputs, batch)`` returns
    ``(loss, parts)``; ``batch`` is on the device and may carry ``"_teachers"`` (distillation).
    """
    from roadvision.models.bundle import save_bundle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(cfg.to_json())
    device = resolve_device(cfg.device)
    policy = PrecisionPolicy.for_device(device)
    seed_everything(cfg.seed, cfg.deterministic, device)
    policy.prepare_model(model.to(device))
    forward = torch.compile(model) if cfg.compile else model

    families = train_ds.families() if cfg.balance_families else None
    sampler = FamilySampler(families, seed=cfg.seed) if families else ResumableSampler(
        len(train_ds), train_ds.weights() if cfg.use_weights else None, seed=cfg.seed)
    batches = math.ceil(len(sampler) / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        batches = min(batches, cfg.max_steps_per_epoch)
    opt_steps = math.ceil(batches / cfg.accumulation)
    total_steps = cfg.epochs * opt_steps
    warmup = (cfg.warmup_steps if cfg.warmup_steps is not None
              else round(cfg.warmup_epochs * opt_steps))
    if cfg.freeze_encoder_epochs:
        release_encoder(model)  # all in the optimiser; apply_freeze gates them per epoch
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = create_scheduler(optimizer, warmup, total_steps, cfg.min_lr_ratio)
    ema = WeightEma(model, cfg.ema_decay) if cfg.ema_decay else None
    shipped = ema.module if ema is not None else model  # what is validated and bundled

    history: list[dict[str, Any]] = []
    start_epoch, best, best_epoch, bad_epochs, stopped = 0, float("-inf"), -1, 0, False
    state = load_checkpoint(out)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, best, best_epoch = state["epoch"], state["best_metric"], state["best_epoch"]
        bad_epochs, stopped = state["bad_epochs"], state["stopped"]
        history = json.loads(state["history"])

    eval_bs = cfg.eval_batch_size or cfg.batch_size
    loader: DataLoader | None = None  # with workers: one persistent loader for the whole run
    progress = EpochProgress(_run_label(), cfg.epochs, batches, first_epoch=start_epoch)
    for ran, epoch in enumerate(range(start_epoch, cfg.epochs)):
        if stopped:
            break
        if cfg.stop_after_epochs is not None and ran >= cfg.stop_after_epochs:
            return TrainResult(out / BUNDLE_DIR, history, best, best_epoch, False, finished=False)
        t0 = time.perf_counter()
        progress.start_epoch(epoch)
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        if loader is None or cfg.num_workers == 0:
            loader = train_loader(train_ds, sampler, cfg, device, epoch, collate_batch)
        model.train()
        apply_freeze(model, epoch, cfg.freeze_encoder_epochs, cfg.unfreeze_epochs)
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        seen, data_seconds = 0, 0.0
        t_fetch = time.perf_counter()
        for i, batch in enumerate(track(loader, f"epoch {epoch + 1}/{cfg.epochs}", total=batches)):
            if i >= batches:
                break
            data_seconds += time.perf_counter() - t_fetch
            batch = policy.prepare_batch(batch)
            with policy.autocast():
                outputs = forward(batch)
                loss, parts = loss_fn(outputs, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, batch {i}: {parts}")
            (loss / cfg.accumulation).backward()
            if (i + 1) % cfg.accumulation == 0 or i + 1 == batches:
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            seen += 1
            progress.step(seen)
            t_fetch = time.perf_counter()
        train_seconds = time.perf_counter() - t0
        with progress.validating():
            val = validate(shipped, val_ds, eval_bs)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(time.perf_counter() - t0, 3),
                  "train_seconds": round(train_seconds, 4), "train_steps": seen,
                  "data_seconds": round(data_seconds, 4),
                  **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()},
                  **{f"val_{k}": v for k, v in val.items()}}
        history.append(record)
        if val["headline"] > best + cfg.min_delta or best_epoch < 0:
            best, best_epoch, bad_epochs = float(val["headline"]), epoch + 1, 0
            extra = {"train_config": cfg.to_dict(), "best_epoch": best_epoch,
                     "val_metrics": val, **(bundle_extra or {})}
            save_bundle(shipped, out / BUNDLE_DIR, extra=json.loads(json.dumps(extra, default=str)))
        else:
            bad_epochs += 1
        stopped = bool(cfg.patience) and bad_epochs >= cfg.patience
        record["best_metric"] = best
        progress.end_epoch(record.get("train_loss", float("nan")),
                           "val mcc" if "mcc" in val else "val miou_no_bg", val["headline"], best)
        (out / HISTORY).write_text(json.dumps(history, indent=2, default=str) + "\n")
        _log_mlflow({k: v for k, v in record.items() if k != "epoch"}, step=epoch + 1)
        save_checkpoint(out, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
            "rng": rng_state(), "epoch": epoch + 1, "best_metric": best,
            "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped": stopped,
            "history": json.dumps(history, default=str),
            **({"ema": ema.state_dict()} if ema is not None else {}),
        })
        if on_epoch is not None:
            on_epoch(dict(record))
    return TrainResult(out / BUNDLE_DIR, history, best, best_epoch, stopped, finished=True)
