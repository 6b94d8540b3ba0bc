"""Step 0, check_params: every pipeline parameter, before anything else runs.

The CLI validates too, but a KFP UI user may type anything: a bad value fails here, in seconds,
with the parameter's name, instead of after an hour of training. The MLflow store is probed
(unreachable = fail now, not at register). The step returns the ensemble member ids that the
``ParallelFor`` fans out over (KFP cannot loop over an int parameter).

It is its own step, not part of ingest, so that ingest's cache key holds only what ingest
reads: changing a gate tolerance must not re-run the data steps and the training.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from typing import Any

from roadvision.components._base import component

__all__ = ["run_check_params", "check_params"]


def run_check_params(params: dict[str, Any], *, check_data: bool = True,
                     check_mlflow: bool = True) -> list[int]:
    """Validate ``params`` (``RunParams`` fields); return the member ids ``[0, .., members-1]``."""
    from roadvision.pipelines.params import RunParams

    p = RunParams(**params).validate(check_data=check_data, check_mlflow=check_mlflow)
    return list(range(int(p.members)))


@component
def check_params(
    task: str, data_uri: str, target_regions: str, holdout_cities: str, min_distance_m: float,
    profile: str, model_preset: str, student_preset: str, epochs: int, members: int,
    batch_size: int, max_steps_per_epoch: int, tta: str, min_delta: float,
    slice_tolerance: float, absolute_floor: float, min_slice_size: int, model_name: str,
    experiment: str, mlflow_tracking_uri: str, s3_endpoint_url: str, seed: int,
) -> list:
    """Validate the run's parameters; returns the ensemble member ids."""
    params = dict(locals())
    from roadvision.components.check_params import run_check_params

    return run_check_params(params)
