"""What every pipeline step shares: the KFP decorator settings and the step's MLflow run.

Components are KFP Python components whose base image is the training image built from
``Dockerfile.train`` (roadvision, torch, kfp and mlflow already installed). ``packages_to_install``
is empty and ``install_kfp_package=False``, so the compiled command holds no ``pip install``:
a step starts the same way on a cluster node and as a ``kfp.local.SubprocessRunner`` subprocess
(which runs it with the current interpreter, where roadvision is installed). True KFP
"containerized" components (``target_image``) are not an option: the SubprocessRunner refuses
them, and ``make demo``/CI must run the very same DAG with no cluster.

A component body only imports its module lazily and calls the plain step function there; the
plain function is what tests and benchmarks call directly.

Every step also writes its structured result, one JSON file in its ``result`` output
(``step_result``): what it did, named by the step itself, so that a reader (``roadvision
pipeline run --local``, a notebook over the artifact store) never scrapes logs or reports.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kfp import dsl

__all__ = ["TRAIN_IMAGE", "component", "step_run", "step_result", "RESULT_SCHEMA",
           "current_pipeline_run_id", "log_metrics", "set_metadata", "ensure_file",
           "publish_metrics", "read_json", "write_json", "code_version", "finish_pipeline_run",
           "name_output", "open_pipeline_run", "log_pipeline_metrics"]

#: The base image of every step (built from Dockerfile.train). ``roadvision pipeline compile
#: --image`` or ``ROADVISION_TRAIN_IMAGE`` override it for a compiled pipeline.
TRAIN_IMAGE = os.environ.get("ROADVISION_TRAIN_IMAGE", "ghcr.io/roadvision/roadvision-train:0.1.0")

PIPELINE_TAG = "roadvision.pipeline_run_id"
KIND_TAG = "roadvision.kind"


def component(func):
    """``@dsl.component`` with the project's settings: our image, nothing installed at start.

    Inside a running step (``_KFP_RUNTIME=true``) KFP ships a reduced ``kfp.dsl`` without the
    decorator; the executor already holds the component and a step body imports its module only
    for the plain function, so there the decorator leaves the function as it is.
    """
    if os.environ.get("_KFP_RUNTIME", "false") == "true":
        return func
    return dsl.component(func, base_image=TRAIN_IMAGE, packages_to_install=[],
                         install_kfp_package=False)


# --------------------------------------------------------------------------- small file helpers
def write_json(path: str | os.PathLike, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


#: Version of the result JSON's common fields (``step_result``).
RESULT_SCHEMA = 1


@contextlib.contextmanager
def step_result(artifact, step: str, task: str = "",
                outputs: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Write the step's result JSON into ``artifact`` (its ``result`` output) on the way out.

    The body fills the yielded dict with the step's own fields. Every result also holds
    ``schema``, ``step`` (the step's kind: ``evaluate``), ``task`` (its own name in the run,
    unique: ``evaluate-student``, ``train-member-1``), ``status`` (``succeeded``/``failed``),
    ``pipeline_run_id`` (the run that computed it: a cached result names an earlier run),
    ``artifacts`` (``outputs``' names -> URIs; on kfp.local the URI is a local path) and, when
    the step failed, ``error`` (the exception's type and message) before the exception propagates.
    """
    fields: dict[str, Any] = {}
    head = {"schema": RESULT_SCHEMA, "step": step, "task": task or step,
            "pipeline_run_id": current_pipeline_run_id(),
            "artifacts": {name: a.uri for name, a in (outputs or {}).items()}}
    try:
        yield fields
    except Exception as exc:
        write_json(artifact.path, {**fields, **head, "status": "failed",
                                   "error": f"{type(exc).__name__}: {exc}"})
        raise
    write_json(artifact.path, {**fields, **head, "status": "succeeded"})


def publish_metrics(artifact, metrics: Mapping[str, Any], *, prefix: str = "") -> None:
    """Scalar entries of a (nested) metrics dict -> a KFP ``Metrics`` artifact's values."""
    from roadvision.registry import flatten_metrics

    for key, value in flatten_metrics(metrics, prefix=prefix).items():
        artifact.log_metric(key, value)
    ensure_file(artifact)


def ensure_file(artifact) -> None:
    """Give a metadata-only artifact (Metrics, ClassificationMetrics) a file: its metadata.

    kfp.local treats a cached output whose file is missing as a cache miss, so without a file
    a step would never be cached locally (and a cluster's object store gets a real object).
    """
    path = Path(artifact.path)
    if not path.exists():
        write_json(path, dict(artifact.metadata))


def name_output(artifact, file_name: str) -> None:
    """Give an output artifact a file name of its own (``error_analysis.html``) in place of
    KFP's bare output name, so that a browser opening the file shows a page, not its source.

    Call before writing it. KFP (kfp.local and the cluster's launcher alike) takes the URI a
    component hands back; only the last path part changes, the file stays in the step's folder.
    """
    head, _, _ = artifact.uri.rpartition("/")
    artifact.uri = f"{head}/{file_name}"


def set_metadata(artifact, values: Mapping[str, Any]) -> None:
    """Artifact metadata as strings.

    Numbers in metadata come back from kfp.local's cache as floats (48 -> 48.0), which changes
    the cache key of every step that consumes the artifact and defeats caching downstream;
    strings survive the round trip unchanged (and read the same in the KFP UI).
    """
    artifact.metadata.update({str(k): v if isinstance(v, str) else json.dumps(v, default=str)
                              for k, v in values.items()})


def code_version() -> str:
    """The git commit of the code when it runs from a checkout, else the package version.

    ``ROADVISION_CODE_VERSION`` wins (the image build sets it: images carry no .git).
    """
    if os.environ.get("ROADVISION_CODE_VERSION"):
        return os.environ["ROADVISION_CODE_VERSION"]
    import roadvision

    root = Path(roadvision.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return f"git:{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"roadvision=={roadvision.__version__}"


# --------------------------------------------------------------------------- MLflow runs
#: Where a step learns which pipeline run it belongs to. Not a component input: an input that
#: differs per run would change every step's cache key and switch KFP caching off for good.
#: On a cluster the pod's ``pipeline/runid`` label arrives as ``KFP_RUN_ID`` (downward API, set
#: in pipelines/training.py); ``roadvision pipeline run --local`` sets the roadvision variable.
RUN_ID_ENV = ("ROADVISION_PIPELINE_RUN_ID", "KFP_RUN_ID")


def current_pipeline_run_id(explicit: str | None = None) -> str:
    """The pipeline run this process works for ("" when called outside a pipeline)."""
    if explicit:
        return explicit
    return next((os.environ[name] for name in RUN_ID_ENV if os.environ.get(name)), "")


def _parent_run(experiment_id: str, pipeline_run_id: str) -> str:
    """The pipeline's MLflow run: injected by the KFP backend (``MLFLOW_RUN_ID``) or ours.

    Ours is found by tag, so that every step of one pipeline run (each its own process)
    lands under the same parent; the first step creates it.
    """
    from mlflow import MlflowClient

    injected = os.environ.pop("MLFLOW_RUN_ID", None)  # popped: mlflow.start_run would resume it
    if injected:
        return injected
    client = MlflowClient()
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{pipeline_run_id}' and "
        f"tags.`{KIND_TAG}` = 'pipeline'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"pipeline-{pipeline_run_id}",
                            tags={PIPELINE_TAG: pipeline_run_id, KIND_TAG: "pipeline"})
    return run.info.run_id


@contextlib.contextmanager
def step_run(step: str, pipeline_run_id: str | None = None, *, experiment: str = "roadvision",
             tracking_uri: str = "", params: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A nested MLflow run for one step under the pipeline run's parent; yields the run.

    ``MLFLOW_EXPERIMENT_ID``/``MLFLOW_RUN_ID`` injected by the KFP backend are used when set.
    Without a pipeline run id (a step called by hand) the run is a plain top-level run.
    """
    import mlflow

    from roadvision import registry

    pipeline_run_id = current_pipeline_run_id(pipeline_run_id)
    registry.configure(tracking_uri or None)
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or registry.ensure_experiment(
        experiment)
    parent = _parent_run(experiment_id, pipeline_run_id) if pipeline_run_id else None
    tags = {"roadvision.step": step, KIND_TAG: "step"}
    if pipeline_run_id:
        tags[PIPELINE_TAG] = pipeline_run_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=step, parent_run_id=parent,
                          nested=parent is not None, tags=tags) as run:
        if params:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
        yield run


def open_pipeline_run(pipeline_run_id: str, params: Mapping[str, Any], *,
                      experiment: str = "roadvision", tracking_uri: str = "") -> str:
    """Make (or find) the pipeline's parent run before its steps start and log the pipeline's
    parameters on it, so that the parent run in MLflow's UI says what the run was asked to do.
    Returns the parent run's id."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from roadvision import registry

    registry.configure(tracking_uri or None)
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or registry.ensure_experiment(
        experiment)
    parent = _parent_run(experiment_id, pipeline_run_id)
    MlflowClient().log_batch(parent, params=[Param(str(k), _param(v))
                                             for k, v in sorted(params.items())])
    return parent


def log_pipeline_metrics(metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Headline numbers (top-level scalars of ``metrics``) onto the pipeline's parent run of the
    active step run, where a reader of the pipeline run looks first; no-op outside a pipeline."""
    import mlflow
    from mlflow import MlflowClient

    run = mlflow.active_run()
    parent = run.data.tags.get("mlflow.parentRunId") if run is not None else None
    if not parent:
        return
    from roadvision.registry import flatten_metrics

    flat = flatten_metrics({k: v for k, v in metrics.items() if not isinstance(v, Mapping)},
                           prefix=prefix)
    client = MlflowClient()
    for key, value in flat.items():
        client.log_metric(parent, key, value)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def log_metrics(metrics: Mapping[str, Any], prefix: str = "") -> None:
    """A (nested) metrics dict into the active run."""
    import mlflow

    from roadvision.registry import flatten_metrics

    flat = {k: v for k, v in flatten_metrics(metrics, prefix=prefix).items() if math.isfinite(v)}
    if flat:
        mlflow.log_metrics(flat)


def finish_pipeline_run(pipeline_run_id: str | None = None, status: str = "FINISHED") -> None:
    """Close the parent run we created (never one the KFP backend injected and owns)."""
    from mlflow import MlflowClient

    pipeline_run_id = current_pipeline_run_id(pipeline_run_id)
    if not pipeline_run_id:
        return
    import mlflow

    experiment = mlflow.active_run().info.experiment_id if mlflow.active_run() else None
    if experiment is None:
        return
    client = MlflowClient()
    for run in client.search_runs([experiment], filter_string=(
            f"tags.`{PIPELINE_TAG}` = '{pipeline_run_id}' and tags.`{KIND_TAG}` = 'pipeline'")):
        client.set_terminated(run.info.run_id, status=status)
