"""Publishing: a model bundle logged as an MLflow pyfunc model and registered as a new version.

The logged model is a pyfunc "model from code" (``roadvision/pyfunc_model.py``), so that MLflow's
UI, ``mlflow models predict`` and signature checks work, with the bundle kept verbatim under
``artifacts/bundle`` (``roadvision.models.bundle.BUNDLE_ARTIFACT``). Serving and the gate never
go through pyfunc: they download the bundle and load it with ``roadvision.models.bundle``.

What MLflow's UI shows, and where: every metric (slices included) is a metric of the run that
logged the model and of the logged model itself (MLflow 3 links them by ``model_id``); the
version keeps a handful of tags (lineage and the headline, :data:`TAGGED_METRICS`), so its page
stays readable; the data set is the run's input (``mlflow.log_input``, digest = the start of the
data contract's content hash), so "Datasets" names it; reports sit beside the model's files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from roadvision.errors import UserError

from .aliases import set_alias
from .client import RegistryClient
from .fluent import ensure_experiment, fluent_store
from .metrics import flatten_metrics, metric_name
from .names import CHALLENGER, check_model_name
from .versions import tag_value

__all__ = ["PIP_REQUIREMENTS", "TAGGED_METRICS", "DIGEST_CHARS", "register_bundle",
           "attach_files", "dataset_input", "logged_model_id", "signature_and_example"]

#: The metrics also kept as ``metric.<name>`` version tags (``model show``, the gate's reader):
#: the rest are metrics only, so that a version carries a dozen tags, not a hundred.
TAGGED_METRICS = ("headline",)
#: How much of the data set's sha256 content hash is its MLflow digest (MLflow keeps 36 chars).
DIGEST_CHARS = 16

# Requirements written into the logged model. Explicit, because inferring them is slow and torch's
# "+cpu" local version label would point a GPU host at the wrong wheel (MLflow 3's
# requirement inference copies the installed version, label included).
PIP_REQUIREMENTS = [
    "roadvision",
    "torch==2.13.0",
    "timm==1.0.31",
    "safetensors",
    "pillow",
    "numpy",
    "pandas",
    "mlflow==3.17.2",
]


def signature_and_example(task: str):
    """The pyfunc's input schema (an encoded image + optional metadata) and a tiny example."""
    import io

    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from PIL import Image

    inputs = Schema([
        ColSpec("binary", "image"),
        ColSpec("double", "lat", required=False), ColSpec("double", "lon", required=False),
        ColSpec("string", "weather", required=False), ColSpec("string", "daytime", required=False),
        ColSpec("string", "scene", required=False), ColSpec("string", "text", required=False),
    ])
    if task == "lanes":
        outputs = Schema([ColSpec("string", "class_shares"), ColSpec("string", "mask_png")])
    else:
        outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "label")])
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    example = pd.DataFrame({"image": [buf.getvalue()]})
    return ModelSignature(inputs=inputs, outputs=outputs), example


def _pyfunc_source() -> str:
    """The models-from-code file MLflow copies into the logged model.

    A file, not a pickled object: loading the logged model runs this small, reviewable module
    instead of unpickling a class (the same reason the bundle itself is safetensors + JSON).
    Found by name, not imported: the registry and the pyfunc face are independent modules.
    """
    spec = importlib.util.find_spec("roadvision.pyfunc_model")
    if spec is None or spec.origin is None:
        raise UserError("roadvision.pyfunc_model is missing from this install")
    return spec.origin


def register_bundle(client: RegistryClient, bundle_dir: str | os.PathLike, model_name: str,
                    tags: Mapping[str, Any], metrics: Mapping[str, Any] | None = None, *,
                    alias: str | None = CHALLENGER, experiment: str = "roadvision",
                    extra_artifacts: Mapping[str, str | os.PathLike] | None = None,
                    validate_example: bool = True,
                    dataset_dir: str | os.PathLike | None = None) -> str:
    """Log ``bundle_dir`` as a pyfunc model, register it under ``model_name``, return the version.

    Logs into the active MLflow run when there is one (a pipeline step's nested run), else into a
    new run of ``experiment``. ``tags`` become model-version tags (data set hash, code version,
    pipeline run id...), ``metrics`` (nested dicts are flattened) become metrics of the run and
    of the logged model, the :data:`TAGGED_METRICS` also ``metric.*`` version tags so that
    ``model show`` reads them without the run. ``dataset_dir`` (a data contract folder) becomes
    the run's dataset input. ``extra_artifacts`` (name -> file or folder) are logged beside the
    model's files (:func:`attach_files`). The new version gets ``alias`` (``challenger``) unless
    it is None.
    """
    from roadvision.models.bundle import CONFIG_FILE, bundle_task

    bundle = Path(bundle_dir)
    if not (bundle / CONFIG_FILE).is_file():
        raise UserError(f"bundle_dir: {bundle} is not a model bundle (no {CONFIG_FILE})")
    check_model_name(model_name)
    task = bundle_task(bundle)
    flat = {metric_name(k): v for k, v in flatten_metrics(metrics or {}).items()}
    version_tags = {str(k): tag_value(v) for k, v in tags.items() if v is not None}
    version_tags.update({f"metric.{k}": f"{flat[k]:.6g}" for k in TAGGED_METRICS if k in flat})
    version_tags.setdefault("task", task)
    # Runs, log_model and register_model are MLflow's fluent API: on this store, for this call.
    with fluent_store(client.uri):
        version, run_id = _log_and_register(bundle, model_name, task, flat, version_tags,
                                            experiment=experiment,
                                            validate_example=validate_example,
                                            dataset_dir=dataset_dir)
    client.mlflow.update_model_version(model_name, version,
                                       description=f"registered from run {run_id}")
    if extra_artifacts:
        attach_files(client, model_name, version, extra_artifacts)
    if alias:
        set_alias(client, model_name, alias, version, reason="registered by the pipeline")
    return version


def attach_files(client: RegistryClient, model_name: str, version: str,
                 files: Mapping[str, str | os.PathLike]) -> None:
    """Put ``files`` (artifact name -> local file or folder) beside the files of version
    ``version``'s logged model, where MLflow's UI lists them (``report.html`` renders there)."""
    model_id = logged_model_id(client.mlflow.get_model_version(model_name, str(version)))
    if model_id is None:
        raise UserError(f"{model_name} v{version} has no logged model to attach files to")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in files.items():
            path = Path(path)
            if path.is_dir():
                client.mlflow.log_model_artifacts(model_id, str(path), artifact_path=name)
            elif path.is_file():
                staged = Path(tmp) / Path(name).name  # the artifact takes the file's name
                shutil.copyfile(path, staged)
                parent = str(Path(name).parent)
                client.mlflow.log_model_artifact(model_id, str(staged),
                                                 artifact_path=None if parent == "." else parent)
            else:
                raise UserError(f"{name}: {path} is neither a file nor a folder")


def logged_model_id(mv: Any) -> str | None:
    """The MLflow 3 logged model behind a model version: ``model_id`` where the store fills it
    in, else read from its source ``models:/<model id>`` (the SQLite store leaves it empty)."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    source = str(getattr(mv, "source", "") or "")
    rest = source[len("models:/"):] if source.startswith("models:/") else ""
    return rest if rest and "/" not in rest and "@" not in rest else None


def dataset_input(dataset_dir: str | os.PathLike):
    """The data contract folder as an ``mlflow.data`` dataset: the manifest's schema and row
    count, named for the task and source, its digest the start of the content hash."""
    import mlflow.data

    from roadvision.data.contract import read_info, read_manifest

    info = read_info(dataset_dir)
    kind = "synthetic" if info.synthetic else (info.source or "data")
    return mlflow.data.from_pandas(
        read_manifest(dataset_dir), source=str(dataset_dir), name=f"{info.task}-{kind}",
        targets="label" if info.task == "roadwork" else None,
        digest=info.content_hash[:DIGEST_CHARS] or None)


def _log_and_register(bundle: Path, model_name: str, task: str, flat: Mapping[str, float],
                      version_tags: Mapping[str, str], *, experiment: str,
                      validate_example: bool,
                      dataset_dir: str | os.PathLike | None) -> tuple[str, str]:
    """Log the pyfunc model (into the active run, else a new one) and register it, through the
    fluent API; returns ``(version, run id)``."""
    import mlflow

    from roadvision.models.bundle import BUNDLE_ARTIFACT

    started = None
    if mlflow.active_run() is None:
        # The experiment goes to start_run, not mlflow.set_experiment: that one also writes
        # MLFLOW_EXPERIMENT_ID into the environment, which outlives fluent_store and sent the
        # process's next step run to an experiment id of this store, in whatever store it used.
        started = mlflow.start_run(experiment_id=ensure_experiment(experiment),
                                   run_name=f"register-{model_name}")
    try:
        run = mlflow.active_run()
        dataset = None
        if dataset_dir is not None:
            synthetic = version_tags.get("dataset.synthetic")
            with warnings.catch_warnings():  # remarks on the source's kind and NULL-able ints
                warnings.simplefilter("ignore", UserWarning)
                dataset = dataset_input(dataset_dir)
                mlflow.log_input(dataset, context="training",
                                 tags={"synthetic": synthetic} if synthetic else None)
        signature, example = signature_and_example(task)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # MLflow's advice (type hints on predict, an example) does not apply: the signature
            # is explicit and the example is skipped only where a caller asks for it.
            warnings.simplefilter("ignore", UserWarning)
            # A clean copy: only the bundle's own files, whatever else sits in its folder.
            staged = Path(tmp) / BUNDLE_ARTIFACT
            shutil.copytree(bundle, staged)
            model_info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_source(),
                artifacts={BUNDLE_ARTIFACT: str(staged)},
                signature=signature,
                input_example=example if validate_example else None,
                pip_requirements=PIP_REQUIREMENTS,
                metadata={"roadvision_task": task},
            )
        if flat:  # on the run and on the logged model, whose page lists them with the data set
            mlflow.log_metrics(dict(flat), model_id=model_info.model_id, dataset=dataset)
        mv = mlflow.register_model(model_info.model_uri, model_name, tags=dict(version_tags))
        return str(mv.version), run.info.run_id
    finally:
        if started is not None:
            mlflow.end_run()
