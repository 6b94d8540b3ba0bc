"""Step 8, distill: the ensemble's members teach one smaller student (GPU step).

The student is what gets registered and served: one forward pass instead of N. It is
calibrated on the validation split like the members. ``unlabelled`` (a ``synth://`` URI or a
folder, "" = none) adds an unlabelled pool the student learns from through the teachers alone.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import shutil
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["student_preset_for", "run_distill", "distill"]


def student_preset_for(task: str, student_preset: str, model_preset: str,
                       training_profile: str) -> str:
    """The student's model preset: given, else ``roadwork_student``; lanes keep the teachers'
    model preset (the lane models are already one small FPN) unless told otherwise."""
    if student_preset:
        return student_preset
    if task == "roadwork":
        return "roadwork_student"
    from roadvision.training import PROFILES

    return model_preset or PROFILES[training_profile]["preset"].format(task=task)


def run_distill(teacher_dirs: list[str | Path], data_dir: str | Path, out_dir: str | Path, *,
                task: str, training_profile: str = "full", student_preset: str = "",
                model_preset: str = "", epochs: int = 40, batch_size: int = 32,
                max_steps_per_epoch: int = 0, seed: int = 0, pipeline_run_id: str | None = None,
                experiment: str = "roadvision", tracking_uri: str = "",
                unlabelled: str = "", lane_bias_objective: str = "iou") -> dict[str, Any]:
    """Distil ``teacher_dirs`` into a calibrated student bundle in ``out_dir``."""
    import tempfile

    import mlflow

    from roadvision.components._base import step_run
    from roadvision.components.train import train_config
    from roadvision.evaluation.calibration import calibrate
    from roadvision.training import distill as distill_model

    preset = student_preset_for(task, student_preset, model_preset, training_profile)
    cfg = train_config(task=task, training_profile=training_profile, model_preset=preset,
                       epochs=epochs, batch_size=batch_size,
                       max_steps_per_epoch=max_steps_per_epoch, seed=int(seed) * 1000 + 999,
                       lane_bias_objective=lane_bias_objective)
    cfg = cfg.replace(distill_unlabelled=unlabelled)
    with step_run("distill", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={**cfg.to_dict(), "teachers": len(teacher_dirs)}):
        with tempfile.TemporaryDirectory() as work:
            result = distill_model([str(t) for t in teacher_dirs], data_dir, work, cfg)
            calibration = calibrate(result.bundle_dir, data_dir, split="val",
                                    objective=cfg.lane_bias_objective)
            shutil.copytree(result.bundle_dir, out_dir, dirs_exist_ok=True)
        summary = {"best_metric": float(result.best_metric), "model_preset": preset,
                   "teachers": len(teacher_dirs), "calibration": calibration}
        mlflow.log_metrics({"best_metric": summary["best_metric"]})
        mlflow.log_dict(calibration, "calibration.json")
    return summary


@component
def distill(teachers: Input[list[Model]], data: Input[Dataset], student: Output[Model],
            metrics: Output[Metrics], result: Output[Artifact], task: str,
            training_profile: str, student_preset: str, model_preset: str, epochs: int,
            batch_size: int, max_steps_per_epoch: int, seed: int, experiment: str,
            mlflow_tracking_uri: str, unlabelled: str = "",
            lane_bias_objective: str = "iou") -> float:
    """Distil the ensemble into one student; returns its best validation headline."""
    from roadvision.components._base import publish_metrics, set_metadata, step_result
    from roadvision.components.distill import run_distill

    with step_result(result, "distill", outputs={"student": student}) as out:
        out.update(run_distill([t.path for t in teachers], data.path, student.path, task=task,
                               training_profile=training_profile,
                               student_preset=student_preset, model_preset=model_preset,
                               epochs=epochs, batch_size=batch_size,
                               max_steps_per_epoch=max_steps_per_epoch, seed=seed,
                               experiment=experiment, tracking_uri=mlflow_tracking_uri,
                               unlabelled=unlabelled,
                               lane_bias_objective=lane_bias_objective))
    publish_metrics(metrics, {"val_headline": out["best_metric"], "teachers": out["teachers"]})
    set_metadata(student, {"framework": "pytorch", "format": "roadvision-bundle",
                           "model_preset": out["model_preset"], "teachers": out["teachers"]})
    return out["best_metric"]
