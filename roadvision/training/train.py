"""``train(data_dir, out_dir, cfg)``: build the model and datasets, then run the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadvision.data.contract import DatasetInfo, read_info
from roadvision.errors import UserError
from roadvision.runtime.dataset import ManifestDataset
from roadvision.runtime.device import resolve_device
from roadvision.runtime.readers import load_rows
from roadvision.training.config import TrainConfig
from roadvision.training.datasets import TrainingDataset
from roadvision.training.loop import EpochCallback, TrainResult, fit, seed_everything

__all__ = ["train", "build_model", "build_loss", "build_datasets", "dataset_extra"]


def _task(info: DatasetInfo, data_dir: str | Path, cfg: TrainConfig) -> str:
    if cfg.task is not None and cfg.task != info.task:
        raise UserError(f"config task {cfg.task!r} but {data_dir} holds {info.task!r} data")
    return info.task


def build_model(data_dir: str | Path, cfg: TrainConfig) -> Any:
    """The model preset for the data set's task, with ``cfg.model_overrides`` applied."""
    from roadvision.models import create_model

    info = read_info(data_dir)
    task = _task(info, data_dir, cfg)
    preset = cfg.preset or f"{task}_small"
    overrides = dict(cfg.model_overrides)
    if task == "lanes" and "classes" not in overrides:
        overrides["classes"] = list(info.classes)
    if task == "roadwork" and overrides.get("view_mode", "auto") == "auto":
        overrides["view_mode"] = _view_mode(data_dir, preset, overrides)
    model = create_model(preset, **overrides)
    if model.cfg.task != task:
        raise UserError(f"preset {preset!r} is a {model.cfg.task} model; the data is {task}")
    return model


def _view_mode(data_dir: str | Path, preset: str, overrides: dict[str, Any]) -> str:
    """The view configuration the training images give (``training_view_mode``), decided
    before the model is built because a single-view model holds one view embedding."""
    import torch

    from roadvision.data.multiview import training_view_mode
    from roadvision.models import create_model
    from roadvision.progress import emit
    from roadvision.runtime.readers import read_image

    with torch.device("meta"):  # only the preset's sizes are needed: no weights, no init
        cfg = create_model(preset, **{**overrides, "encoder_weights": "random"}).cfg
    if cfg.task != "roadwork":
        return "auto"
    rows = load_rows(data_dir, ["train"])
    known = rows.dropna(subset=["width", "height"]) if {"width", "height"} <= set(rows) else \
        rows.iloc[:0]
    sizes = list(zip(known["width"], known["height"], strict=True))
    if not sizes and len(rows):  # no sizes in the manifest: the first image speaks for all
        height, width = read_image(data_dir, rows["image"].iloc[0]).shape[:2]
        sizes = [(width, height)]
    mode = training_view_mode(sizes, cfg.view_size, cfg.num_views) if sizes else "multi"
    emit(f"view configuration: {mode}-view ({cfg.view_size} px views"
         f"{'' if mode == 'single' else f', up to {cfg.num_views}'}), from the training images")
    return mode


def build_datasets(data_dir: str | Path, model_cfg: Any, cfg: TrainConfig
                   ) -> tuple[TrainingDataset, ManifestDataset]:
    """Train (augmented) and val datasets. Only these two splits are ever read here."""
    train_rows = load_rows(data_dir, ["train"])
    val_rows = load_rows(data_dir, ["val"])
    train_ds = TrainingDataset(data_dir, train_rows, model_cfg, augment=cfg.augment,
                               crop_size=cfg.crop_size, lane_crop_p=cfg.lane_crop_p, seed=cfg.seed,
                               appearance=cfg.appearance)
    val_ds = ManifestDataset(data_dir, val_rows, model_cfg)
    return train_ds, val_ds


def dataset_extra(data_dir: str | Path) -> dict[str, Any]:
    info = read_info(data_dir)
    extra: dict[str, Any] = {"dataset": {"content_hash": info.content_hash, "source": info.source,
                                         "synthetic": info.synthetic,
                                         "num_samples": info.num_samples}}
    if "gsd_m" in info.extra:  # the ground sample distance orthophotos are mapped at (geo.gsd)
        extra["gsd_m"] = float(info.extra["gsd_m"])
    return extra


def build_loss(model: Any, cfg: TrainConfig) -> Any:
    """The training loss of ``model`` under ``cfg`` (``loss_weights``, ``lane_loss``), sized to
    the model's classes (4 or 12 for lanes). Every trainer builds its loss here."""
    from roadvision.models.losses import create_loss

    options = cfg.loss_options(model.cfg.task)
    if model.cfg.task == "lanes":
        options.setdefault("num_classes", model.cfg.num_classes)
    return create_loss(model.cfg.task, **options)


def train(data_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, *,
          on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train a model on ``data_dir``'s train split, select on val, write ``out_dir/bundle``.

    Resumes from ``out_dir/checkpoint`` when present (same config expected). Writes
    ``history.json`` and ``train_config.json`` beside it. The test split is never read.
    ``on_epoch`` sees each epoch's history record (a sweep prunes on it).
    """
    if not Path(data_dir).is_dir():
        raise UserError(f"data set {data_dir} is not a directory")
    # seed before the model exists: its random init must not depend on what ran before
    seed_everything(cfg.seed, cfg.deterministic, resolve_device(cfg.device))
    model = build_model(data_dir, cfg)
    train_ds, val_ds = build_datasets(data_dir, model.cfg, cfg)
    loss = build_loss(model, cfg)
    return fit(model, train_ds, val_ds, cfg, out_dir, loss, bundle_extra=dataset_extra(data_dir),
               on_epoch=on_epoch)
