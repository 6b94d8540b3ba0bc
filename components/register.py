"""Step 10, register: the student bundle into the MLflow registry as ``@challenger``.

The version carries what an operator needs to trust it without opening the run: the data
set's content hash, the code version, the pipeline run id, the headline and every slice
metric (``metric.*`` tags), the teachers' headlines; the error analysis report is logged
beside the model.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import json
from pathlib import Path
from typing import Any

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["run_register", "register"]


def run_register(bundle_dir: str | Path, metrics_path: str | Path, data_dir: str | Path, *,
                 task: str, model_name: str = "", report_path: str | Path | None = None,
                 teacher_headlines: list[float] | None = None, pipeline_run_id: str | None = None,
                 experiment: str = "roadvision", tracking_uri: str = "") -> dict[str, Any]:
    """Register the bundle as ``@challenger``; returns ``{"model_name", "version", "alias"}``."""
    from roadvision import registry
    from roadvision.components._base import (
        code_version,
        current_pipeline_run_id,
        read_json,
        step_run,
    )
    from roadvision.data.contract import read_info
    from roadvision.registry import resolve_model_name

    name = resolve_model_name(model_name, task)
    metrics = read_json(metrics_path)
    info = read_info(data_dir)
    teachers = [float(h) for h in (teacher_headlines or [])]
    tags: dict[str, Any] = {
        "task": task,
        "dataset.content_hash": info.content_hash,
        "dataset.synthetic": str(bool(info.synthetic)).lower(),
        "code_version": code_version(),
        "pipeline_run_id": current_pipeline_run_id(pipeline_run_id) or "manual",
        "teacher_headlines": json.dumps([round(h, 6) for h in teachers]),
    }
    extra = {"reports": report_path} if report_path and Path(report_path).is_file() else {}
    with step_run("register", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"model_name": name}):
        version = registry.register_bundle(bundle_dir, name, tags, metrics,
                                           experiment=experiment, extra_artifacts=extra)
    return {"model_name": name, "version": version, "alias": "challenger"}


@component
def register(model: Input[Model], metrics: Input[Metrics], data: Input[Dataset],
             report: Input[HTML], result: Output[Artifact], teacher_headlines: list, task: str,
             model_name: str, experiment: str, mlflow_tracking_uri: str) -> str:
    """Register the model in MLflow with alias ``challenger``; returns the version."""
    from roadvision.components._base import step_result
    from roadvision.components.register import run_register

    with step_result(result, "register") as out:
        out.update(run_register(model.path, metrics.path, data.path, task=task,
                                model_name=model_name, report_path=report.path,
                                teacher_headlines=teacher_headlines, experiment=experiment,
                                tracking_uri=mlflow_tracking_uri))
    return out["version"]
