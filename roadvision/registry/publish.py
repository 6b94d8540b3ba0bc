"""Publishing: a model bundle logged as an MLflow pyfunc model and registered as a new version.

The logged model is a pyfunc "model from code" (``roadvision/pyfunc_model.py``), so that MLflow's
UI, ``mlflow models predict`` and signature checks work, with the bundle kept verbatim under
``artifacts/bundle`` (``roadvision.models.bundle.BUNDLE_ARTIFACT``). Serving and the gate never
go through pyfunc: they download the bundle and load it with ``roadvision.models.bundle``.
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

__all__ = ["PIP_REQUIREMENTS", "register_bundle", "signature_and_example"]

# Requirements written into the logged model. Explicit, because inferring them is slow and torch's
# "+cpu" local version label would point a GPU host at the wrong wheel (see RESEARCH.md).
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
                    validate_example: bool = True) -> str:
    """Log ``bundle_dir`` as a pyfunc model, register it under ``model_name``, return the version.

    Logs into the active MLflow run when there is one (a pipeline step's nested run), else into a
    new run of ``experiment``. ``tags`` become model-version tags (data set hash, code version,
    pipeline run id...), ``metrics`` (nested dicts are flattened) become run metrics and
    ``metric.*`` version tags so that ``model show`` and the gate read them without the run.
    ``extra_artifacts`` (name -> file or folder) are logged beside the model (reports, plots).
    The new version gets ``alias`` (``challenger``) unless it is None.
    """
    from roadvision.models.bundle import CONFIG_FILE, bundle_task

    bundle = Path(bundle_dir)
    if not (bundle / CONFIG_FILE).is_file():
        raise UserError(f"bundle_dir: {bundle} is not a model bundle (no {CONFIG_FILE})")
    check_model_name(model_name)
    task = bundle_task(bundle)
    flat = {metric_name(k): v for k, v in flatten_metrics(metrics or {}).items()}
    version_tags = {str(k): tag_value(v) for k, v in tags.items() if v is not None}
    version_tags.update({f"metric.{k}": f"{v:.6g}" for k, v in flat.items()})
    version_tags.setdefault("task", task)
    # Runs, log_model and register_model are MLflow's fluent API: on this store, for this call.
    with fluent_store(client.uri):
        version, run_id = _log_and_register(bundle, model_name, task, flat, version_tags,
                                            experiment=experiment,
                                            extra_artifacts=extra_artifacts or {},
                                            validate_example=validate_example)
    client.mlflow.update_model_version(model_name, version,
                                       description=f"registered from run {run_id}")
    if alias:
        set_alias(client, model_name, alias, version, reason="registered by the pipeline")
    return version


def _log_and_register(bundle: Path, model_name: str, task: str, flat: Mapping[str, float],
                      version_tags: Mapping[str, str], *, experiment: str,
                      extra_artifacts: Mapping[str, str | os.PathLike],
                      validate_example: bool) -> tuple[str, str]:
    """Log the pyfunc model (into the active run, else a new one) and register it, through the
    fluent API; returns ``(version, run id)``."""
    import mlflow

    from roadvision.models.bundle import BUNDLE_ARTIFACT

    started = None
    if mlflow.active_run() is None:
        mlflow.set_experiment(experiment_id=ensure_experiment(experiment))
        started = mlflow.start_run(run_name=f"register-{model_name}")
    try:
        run = mlflow.active_run()
        if flat:
            mlflow.log_metrics(dict(flat))
        for name, path in extra_artifacts.items():
            path = Path(path)
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=name)
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path=name)
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
        mv = mlflow.register_model(model_info.model_uri, model_name, tags=dict(version_tags))
        return str(mv.version), run.info.run_id
    finally:
        if started is not None:
            mlflow.end_run()
