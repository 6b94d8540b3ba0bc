"""Step 0, check_params: every pipeline parameter, before anything else runs.

The CLI validates too, but a KFP UI user may type anything: a bad value fails here, in seconds,
with the parameter's name, instead of after an hour of training. The MLflow store is probed
(unreachable, or refusing registry calls = fail now, not at register), and on a cluster it must
be one that every pod shares (not the local SQLite default). The step returns the ensemble
member ids that the ``ParallelFor`` fans out over (KFP cannot loop over an int parameter).
The parameters themselves (fields, defaults, rules) are ``run_params.RunParams``.

It is its own step, not part of ingest, so that ingest's cache key holds only what ingest
reads: changing a gate tolerance must not re-run the data steps and the training.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kfp.dsl import Artifact, Output

from roadvision.components._base import component

__all__ = ["run_check_params", "check_params", "on_cluster", "require_shared_tracking"]

#: Tracking stores every pod of a run reaches alike (a server or a database server).
SHARED_SCHEMES = ("http", "https", "databricks", "postgresql", "mysql", "mssql")


def on_cluster(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this step runs in a cluster's pod rather than under ``kfp.local``.

    The compiled pipeline gives every task ``KFP_RUN_ID`` from its pod's ``pipeline/runid``
    label (pipelines/training.py); kfp.local ignores Kubernetes settings, so a local step never
    has it, and ``roadvision pipeline run --local`` sets ``ROADVISION_PIPELINE_RUN_ID`` instead
    (also when it runs inside a pod, e.g. a notebook server, where local SQLite is fine).
    """
    return bool(env.get("KFP_RUN_ID")) and not env.get("ROADVISION_PIPELINE_RUN_ID")


def require_shared_tracking(mlflow_tracking_uri: str) -> str:
    """The tracking URI a cluster run uses; a UserError when it is a file in the pod.

    Each step is its own pod: a SQLite file or a file store there (what an empty
    ``mlflow_tracking_uri`` falls back to) is a separate registry per step, so register, gate
    and promote would not see each other's models, and nothing would say so.
    """
    from roadvision.errors import UserError
    from roadvision.registry import tracking_uri

    resolved = tracking_uri(mlflow_tracking_uri or None)
    if urllib.parse.urlparse(resolved).scheme not in SHARED_SCHEMES:
        given = (f"{resolved!r}" if mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                 else f"empty, which falls back to {resolved!r}")
        raise UserError(
            f"mlflow_tracking_uri: {given} on a cluster, where every step is its own pod "
            "with its own files: register and gate would each see a different, empty registry. "
            "Set mlflow_tracking_uri to the tracking server (e.g. "
            "http://mlflow.mlflow.svc.cluster.local:5000) or MLFLOW_TRACKING_URI in the image")
    return resolved


def run_check_params(params: dict[str, Any], *, check_data: bool = True,
                     check_mlflow: bool = True, cluster: bool | None = None) -> list[int]:
    """Validate ``params`` (``RunParams`` fields); return the member ids ``[0, .., members-1]``.

    ``cluster`` (default: :func:`on_cluster`) also requires a tracking store shared by pods.
    """
    from roadvision.components.run_params import RunParams

    p = RunParams(**params).validate(check_data=check_data, check_mlflow=False)
    if on_cluster() if cluster is None else cluster:
        require_shared_tracking(p.mlflow_tracking_uri)
    if check_mlflow:  # the store is probed last: the other parameters fail without a network
        p.validate(check_data=False, check_mlflow=True)
    return list(range(int(p.members)))


@component
def check_params(
    result: Output[Artifact],
    task: str, data_uri: str, target_regions: str, holdout_cities: str, min_distance_m: float,
    training_profile: str, model_preset: str, student_preset: str, epochs: int, members: int,
    batch_size: int, max_steps_per_epoch: int, tta: str, min_delta: float,
    slice_tolerance: float, absolute_floor: float, min_slice_size: int, model_name: str,
    experiment: str, mlflow_tracking_uri: str, s3_endpoint_url: str, seed: int,
    pseudo_label_pool: str, pseudo_label_rounds: int, distill_unlabelled: str,
    lane_bias_objective: str,
) -> list:
    """Validate the run's parameters; returns the ensemble member ids."""
    params = {k: v for k, v in locals().items() if k != "result"}
    from roadvision.components._base import step_result
    from roadvision.components.check_params import run_check_params

    with step_result(result, "check_params") as out:
        out["members"] = run_check_params(params)
    return out["members"]
