"""Step 5, train: one ensemble member (GPU step; the pipeline fans it out with ParallelFor).

Members differ by seed (data order, augmentation, init). After training, the member is
calibrated (temperature + logit bias written into the bundle), because distillation averages
the members' *calibrated* probabilities: on the validation split, or, with the training
profile's ``calibration_folds`` = k >= 2, on k-fold out-of-fold predictions over train+val
(``out_of_fold_sources``: k fold models of the member's best epoch count, each scoring the
fold it never saw), which gives calibration k times more images than val alone.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import shutil
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["train_config", "run_train", "train", "fold_ids", "out_of_fold_sources"]


def train_config(*, task: str, training_profile: str, model_preset: str, epochs: int,
                 batch_size: int, max_steps_per_epoch: int, seed: int,
                 lane_bias_objective: str = "iou", overrides: str = ""):
    """The ``TrainConfig`` a pipeline run asks for (0/"" mean "the training profile's value").

    ``lane_bias_objective``: what the lanes decision biases are fitted for at calibration
    (``roadvision.metrics.LANE_BIAS_OBJECTIVES``: iou, or lines = skeleton F1 at 0.5 m).
    ``overrides``: a JSON object of ``TrainConfig`` fields applied last (a sweep trial's
    hyper-parameters); "" changes nothing.
    """
    from roadvision.training import TrainConfig
    from roadvision.training.config import parse_json_object

    cfg = TrainConfig.for_profile(
        training_profile, task, preset=model_preset or None, epochs=int(epochs),
        batch_size=int(batch_size), max_steps_per_epoch=int(max_steps_per_epoch) or None,
        seed=int(seed), lane_bias_objective=lane_bias_objective or None)
    changes = parse_json_object(overrides, "overrides", "TrainConfig fields")
    return cfg.replace(**changes) if changes else cfg


def fold_ids(rows: Any, folds: int, seed: int = 0) -> Any:
    """The fold (0..folds-1) of each manifest row: whole cities per fold when there are at
    least ``folds`` of them (near-duplicate images of one city must not straddle folds,
    DESIGN.md), largest city first into the smallest fold; else seeded random folds
    stratified by label."""
    import numpy as np

    cities = rows["city"].fillna("").astype(str) if "city" in rows else None
    if cities is not None and cities.nunique() >= folds:
        sizes, assign = np.zeros(folds), {}
        for city, count in cities.value_counts().items():
            assign[city] = int(np.argmin(sizes))
            sizes[assign[city]] += count
        return cities.map(assign).to_numpy()
    rng = np.random.default_rng(seed)
    labelled = "label" in rows and rows["label"].notna().all()
    key = rows["label"].to_numpy() if labelled else np.zeros(len(rows))
    ids = np.zeros(len(rows), dtype=np.int64)
    for value in np.unique(key):
        idx = np.flatnonzero(key == value)
        rng.shuffle(idx)
        ids[idx] = np.arange(len(idx)) % folds
    return ids


def out_of_fold_sources(data_dir: str | Path, cfg: Any, folds: int, epochs: int,
                        work: str | Path) -> list[tuple[Any, Any]]:
    """``(fold model, its held-out fold)`` pairs over train+val for ``calibrate_on``.

    Each fold model trains ``epochs`` epochs on the other folds and is taken at its last
    epoch, so the held-out fold never chooses anything about the model that scores it.
    """
    import contextlib

    import mlflow

    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.device import resolve_device
    from roadvision.runtime.readers import load_rows
    from roadvision.training.datasets import TrainingDataset
    from roadvision.training.loop import fit, seed_everything
    from roadvision.training.train import build_loss, build_model

    rows = load_rows(data_dir, ["train", "val"])
    fold = fold_ids(rows, folds, cfg.seed)
    # min_delta -inf-like: every epoch counts as an improvement, so the last one is kept
    fold_cfg = cfg.replace(epochs=max(1, int(epochs)), patience=0, min_delta=-1e9)
    sources = []
    for f in range(folds):
        train_rows, held = rows[fold != f], rows[fold == f]
        if not len(held) or not len(train_rows):
            continue
        seed_everything(cfg.seed + 7919 * (f + 1), cfg.deterministic, resolve_device(cfg.device))
        model = build_model(data_dir, cfg)
        train_ds = TrainingDataset(data_dir, train_rows, model.cfg, augment=cfg.augment,
                                   crop_size=cfg.crop_size, lane_crop_p=cfg.lane_crop_p,
                                   seed=cfg.seed + f)
        held_ds = ManifestDataset(data_dir, held, model.cfg)
        loss = build_loss(model, cfg)
        # the fold's per-epoch metrics go to a run of its own, not over the member's history
        run = (mlflow.start_run(run_name=f"calibration-fold-{f}", nested=True)
               if mlflow.active_run() is not None else contextlib.nullcontext())
        with run:
            result = fit(model, train_ds, held_ds, fold_cfg, Path(work) / f"fold{f}", loss)
        sources.append((load_bundle(result.bundle_dir), held_ds))
    return sources


def member_task(member: int) -> str:
    """The own name of member ``member``'s training (its MLflow run and result)."""
    return f"train-member-{int(member)}"


def run_train(data_dir: str | Path, out_dir: str | Path, *, task: str,
              training_profile: str = "full", model_preset: str = "", epochs: int = 40,
              batch_size: int = 32, max_steps_per_epoch: int = 0, member: int = 0, seed: int = 0,
              pipeline_run_id: str | None = None, experiment: str = "roadvision",
              tracking_uri: str = "", lane_bias_objective: str = "iou",
              overrides: str = "") -> dict[str, Any]:
    """Train + calibrate member ``member``; the bundle ends up in ``out_dir``.

    Returns ``{"member", "best_metric", "best_epoch", "calibration", "model_preset"}``.
    """
    import tempfile

    import mlflow

    from roadvision.components._base import step_run
    from roadvision.evaluation.calibration import calibrate, calibrate_on
    from roadvision.training import train as train_model

    member = int(member)  # kfp.local hands ParallelFor items back as floats
    cfg = train_config(task=task, training_profile=training_profile, model_preset=model_preset,
                       epochs=epochs, batch_size=batch_size,
                       max_steps_per_epoch=max_steps_per_epoch, seed=int(seed) * 1000 + member,
                       lane_bias_objective=lane_bias_objective, overrides=overrides)
    with step_run(member_task(member), pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri, params={**cfg.to_dict(), "member": member}):
        with tempfile.TemporaryDirectory() as work:
            # Checkpoints stay in a scratch folder; only the bundle becomes the artifact.
            result = train_model(data_dir, work, cfg)
            if cfg.calibration_folds >= 2:
                sources = out_of_fold_sources(data_dir, cfg, cfg.calibration_folds,
                                              result.best_epoch, Path(work) / "folds")
                calibration = calibrate_on(result.bundle_dir, sources,
                                           f"oof-{cfg.calibration_folds}",
                                           objective=cfg.lane_bias_objective)
            else:
                calibration = calibrate(result.bundle_dir, data_dir, split="val",
                                        objective=cfg.lane_bias_objective)
            shutil.copytree(result.bundle_dir, out_dir, dirs_exist_ok=True)
        summary = {"member": member, "best_metric": float(result.best_metric),
                   "best_epoch": result.best_epoch, "calibration": calibration,
                   "model_preset": cfg.preset}
        mlflow.log_metrics({"best_metric": summary["best_metric"]})
        mlflow.log_dict(calibration, "calibration.json")
    return summary


@component
def train(data: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
          result: Output[Artifact], task: str, training_profile: str, model_preset: str,
          epochs: int, batch_size: int, max_steps_per_epoch: int, member: int, seed: int,
          experiment: str, mlflow_tracking_uri: str, lane_bias_objective: str = "iou",
          overrides: str = "") -> float:
    """Train and calibrate one ensemble member (or sweep trial: ``overrides``, a JSON object of
    TrainConfig fields); returns its best validation headline."""
    from roadvision.components._base import publish_metrics, set_metadata, step_result
    from roadvision.components.train import member_task, run_train

    with step_result(result, "train", member_task(member), outputs={"model": model}) as out:
        out.update(run_train(data.path, model.path, task=task, training_profile=training_profile,
                             model_preset=model_preset, epochs=epochs, batch_size=batch_size,
                             max_steps_per_epoch=max_steps_per_epoch, member=member, seed=seed,
                             experiment=experiment, tracking_uri=mlflow_tracking_uri,
                             lane_bias_objective=lane_bias_objective, overrides=overrides))
    publish_metrics(metrics, {"val_headline": out["best_metric"],
                              "calibration": out["calibration"]})
    # The member travels with its model: the member's evaluation names itself after it.
    set_metadata(model, {"framework": "pytorch", "format": "roadvision-bundle",
                         "model_preset": out["model_preset"], "member": out["member"]})
    return out["best_metric"]
