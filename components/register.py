"""Step 10, register: the student bundle into the MLflow registry as ``@challenger``.

The version carries, in a few tags, what an operator needs to trust it without opening the
run: the data set's content hash and whether it is synthetic, the code version, the pipeline
run id, the headline (``metric.headline``). Every metric (slices included) and the teachers'
headlines are metrics of the run that logged the model (and of the logged model); the data set
is the run's input; the error analysis report, titled with the registered name and version,
sits beside the model's files as ``report.html``. The headline numbers also go onto the
pipeline's parent run.

The registered bundle carries its drift reference (``monitoring/reference.py``: encoder
embeddings, image statistics and scores of up to ``drift_reference_rows`` training images), so
``roadvision monitor drift`` and the chart's CronJob can compare served traffic with the model's
own training data without a separate step. The reference is written into a copy of the bundle:
a step's input artifact is not ours to change.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["run_register", "register"]


def run_register(bundle_dir: str | Path, metrics_path: str | Path, data_dir: str | Path, *,
                 task: str, model_name: str = "", report_path: str | Path | None = None,
                 teacher_headlines: list[float] | None = None, pipeline_run_id: str | None = None,
                 experiment: str = "roadvision", tracking_uri: str = "",
                 drift_reference_rows: int = 200) -> dict[str, Any]:
    """Register the bundle as ``@challenger``; returns ``{"model_name", "version", "alias"}``.

    ``drift_reference_rows`` training images form the stored drift reference (0: none)."""
    from roadvision.components._base import (
        code_version,
        current_pipeline_run_id,
        log_metrics,
        log_pipeline_metrics,
        read_json,
        step_run,
    )
    from roadvision.data.contract import read_info
    from roadvision.registry import RegistryClient, publish, resolve_model_name

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
    }
    with step_run("register", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"model_name": name}):
        log_metrics({f"teacher_{i}": {"headline": h} for i, h in enumerate(teachers)})
        with _with_drift_reference(Path(bundle_dir), Path(data_dir),
                                   drift_reference_rows) as bundle:
            version = publish.register_bundle(RegistryClient(), bundle, name, tags, metrics,
                                              experiment=experiment, dataset_dir=data_dir)
        if report_path and Path(report_path).is_file():
            _attach_report(name, version, Path(report_path))
        # The parent run's headline numbers: the student's headline and its overall metrics.
        log_pipeline_metrics({"headline": metrics.get("headline"), **metrics.get("metrics", {})},
                             prefix="student.")
        log_pipeline_metrics({f"teacher_{i}.headline": h for i, h in enumerate(teachers)})
    return {"model_name": name, "version": version, "alias": "challenger"}


@contextlib.contextmanager
def _with_drift_reference(bundle_dir: Path, data_dir: Path, rows: int) -> Iterator[Path]:
    """A copy of the bundle with its drift reference added (the bundle itself when ``rows``
    is 0 or it already holds one)."""
    from roadvision.models.bundle import locate_bundle
    from roadvision.monitoring.reference import REFERENCE_FILE, build_reference, save_reference

    if rows <= 0 or (locate_bundle(bundle_dir) / REFERENCE_FILE).is_file():
        yield bundle_dir
        return
    with tempfile.TemporaryDirectory(prefix="roadvision-register-") as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(locate_bundle(bundle_dir), copy)
        save_reference(build_reference(copy, data_dir, n=max(rows, 2)), copy)
        yield copy


def _attach_report(name: str, version: str, report: Path) -> None:
    """The error analysis beside the registered model as ``report.html``, its title naming
    the version (the report was written before the version existed)."""
    from roadvision.evaluation.error_analysis import model_label, retitle
    from roadvision.registry import RegistryClient, publish

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(retitle(report.read_text(), model_label(name, version)))
        publish.attach_files(RegistryClient(), name, version, {"report.html": page})


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
