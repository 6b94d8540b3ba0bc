"""Step 1, ingest: check the run's parameters, then copy + check the data into the contract.

It is the first step, so it also validates every pipeline parameter (the CLI did too, but a KFP
UI user may have typed anything): a bad one fails here, in seconds, with the parameter's name.
``synth://`` data URIs are generated first and then ingested like any other folder. The step
returns the ensemble member ids the ``ParallelFor`` fans out over (KFP cannot loop over an int).
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import tempfile
from pathlib import Path
from typing import Any

from kfp.dsl import Dataset, Output
from roadvision.components._base import component

__all__ = ["run_ingest", "ingest"]


def run_ingest(out_dir: str | Path, params: dict[str, Any], *, pipeline_run_id: str = "",
               check_mlflow: bool = True) -> dict[str, Any]:
    """Validate ``params`` (``RunParams`` fields), ingest ``params['data_uri']`` into ``out_dir``.

    Returns ``{"accepted", "quarantined", "content_hash", "members"}``.
    """
    import mlflow
    from roadvision.components._base import step_run
    from roadvision.pipelines.params import RunParams, parse_synth_uri

    from roadvision.data.ingest import ingest as ingest_data

    p = RunParams(**params).validate(check_data=True, check_mlflow=check_mlflow)
    with step_run("ingest", pipeline_run_id, experiment=p.experiment,
                  tracking_uri=p.mlflow_tracking_uri, params=p.to_dict()), \
            tempfile.TemporaryDirectory() as tmp:
        source: str | Path = p.data_uri
        if p.data_uri.startswith("synth://"):
            from roadvision.data.synth import generate

            task, opts = parse_synth_uri(p.data_uri)
            source = Path(tmp) / "synth"
            generate(task=task, out=source, **opts)
        report = ingest_data(source, out_dir, endpoint_url=p.s3_endpoint_url or None)
        if report.info.task != p.task:
            from roadvision.errors import UserError

            raise UserError(f"data_uri: holds {report.info.task!r} data but task is {p.task!r}")
        summary = {"accepted": report.accepted, "quarantined": len(report.quarantined),
                   "content_hash": report.info.content_hash,
                   "members": list(range(int(p.members)))}
        mlflow.log_metrics({"accepted": report.accepted, "quarantined": len(report.quarantined)})
        mlflow.set_tag("dataset.content_hash", report.info.content_hash)
        quarantine = Path(out_dir) / "quarantine.json"
        if quarantine.is_file():
            mlflow.log_artifact(str(quarantine), artifact_path="ingest")
    return summary


@component
def ingest(
    dataset: Output[Dataset],
    task: str, data_uri: str, target_regions: str, holdout_cities: str, min_distance_m: float,
    profile: str, model_preset: str, student_preset: str, epochs: int, members: int,
    batch_size: int, max_steps_per_epoch: int, tta: str, min_delta: float,
    slice_tolerance: float, absolute_floor: float, min_slice_size: int, model_name: str,
    experiment: str, mlflow_tracking_uri: str, s3_endpoint_url: str, seed: int,
    pipeline_run_id: str,
) -> list:
    """Validate the run's parameters and ingest ``data_uri`` into the data contract."""
    params = {k: v for k, v in locals().items() if k not in ("dataset", "pipeline_run_id")}
    from roadvision.components.ingest import run_ingest

    summary = run_ingest(dataset.path, params, pipeline_run_id=pipeline_run_id)
    dataset.metadata.update({k: summary[k] for k in ("accepted", "quarantined", "content_hash")})
    return summary["members"]
