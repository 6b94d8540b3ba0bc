"""Step 5, train: one ensemble member (GPU step; the pipeline fans it out with ParallelFor).

Members differ by seed (data order, augmentation, init). After training, the member is
calibrated on the validation split (temperature + logit bias written into the bundle), because
distillation averages the members' *calibrated* probabilities.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import shutil
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["train_config", "run_train", "train"]


def train_config(*, task: str, training_profile: str, model_preset: str, epochs: int,
                 batch_size: int, max_steps_per_epoch: int, seed: int):
    """The ``TrainConfig`` a pipeline run asks for (0/"" mean "the training profile's value")."""
    from roadvision.training import TrainConfig

    return TrainConfig.for_profile(
        training_profile, task, preset=model_preset or None, epochs=int(epochs),
        batch_size=int(batch_size), max_steps_per_epoch=int(max_steps_per_epoch) or None,
        seed=int(seed))


def member_task(member: int) -> str:
    """The own name of member ``member``'s training (its MLflow run and result)."""
    return f"train-member-{int(member)}"


def run_train(data_dir: str | Path, out_dir: str | Path, *, task: str,
              training_profile: str = "full", model_preset: str = "", epochs: int = 40,
              batch_size: int = 32, max_steps_per_epoch: int = 0, member: int = 0, seed: int = 0,
              pipeline_run_id: str | None = None, experiment: str = "roadvision",
              tracking_uri: str = "") -> dict[str, Any]:
    """Train + calibrate member ``member``; the bundle ends up in ``out_dir``.

    Returns ``{"member", "best_metric", "best_epoch", "calibration", "model_preset"}``.
    """
    import tempfile

    import mlflow

    from roadvision.components._base import step_run
    from roadvision.evaluation.calibration import calibrate
    from roadvision.training import train as train_model

    member = int(member)  # kfp.local hands ParallelFor items back as floats
    cfg = train_config(task=task, training_profile=training_profile, model_preset=model_preset,
                       epochs=epochs, batch_size=batch_size,
                       max_steps_per_epoch=max_steps_per_epoch, seed=int(seed) * 1000 + member)
    with step_run(member_task(member), pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri, params={**cfg.to_dict(), "member": member}):
        with tempfile.TemporaryDirectory() as work:
            # Checkpoints stay in a scratch folder; only the bundle becomes the artifact.
            result = train_model(data_dir, work, cfg)
            calibration = calibrate(result.bundle_dir, data_dir, split="val")
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
          experiment: str, mlflow_tracking_uri: str) -> float:
    """Train and calibrate one ensemble member; returns its best validation headline."""
    from roadvision.components._base import publish_metrics, set_metadata, step_result
    from roadvision.components.train import member_task, run_train

    with step_result(result, "train", member_task(member), outputs={"model": model}) as out:
        out.update(run_train(data.path, model.path, task=task, training_profile=training_profile,
                             model_preset=model_preset, epochs=epochs, batch_size=batch_size,
                             max_steps_per_epoch=max_steps_per_epoch, member=member, seed=seed,
                             experiment=experiment, tracking_uri=mlflow_tracking_uri))
    publish_metrics(metrics, {"val_headline": out["best_metric"],
                              "calibration": out["calibration"]})
    # The member travels with its model: the member's evaluation names itself after it.
    set_metadata(model, {"framework": "pytorch", "format": "roadvision-bundle",
                         "model_preset": out["model_preset"], "member": out["member"]})
    return out["best_metric"]
