"""Step 1, ingest: copy and check the data set at ``data_uri`` into the data contract.

Rows that fail a check (unreadable image, bad metadata, duplicate id) are quarantined and
reported, not fatal. ``synth://TASK?n=..`` URIs are generated first and then ingested like any
other folder, so demos and CI need no data on disk.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import tempfile
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Output

from roadvision.components._base import component

__all__ = ["run_ingest", "ingest"]


def run_ingest(data_uri: str, out_dir: str | Path, *, task: str, s3_endpoint_url: str = "",
               pipeline_run_id: str | None = None, experiment: str = "roadvision",
               tracking_uri: str = "") -> dict[str, Any]:
    """Ingest ``data_uri`` into ``out_dir``; returns accepted/quarantined counts and the hash."""
    import mlflow

    from roadvision.components._base import step_run
    from roadvision.data.ingest import ingest as ingest_data
    from roadvision.errors import UserError

    with step_run("ingest", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"data_uri": data_uri, "task": task}), \
            tempfile.TemporaryDirectory() as tmp:
        source: str | Path = data_uri
        if data_uri.startswith("synth://"):
            from roadvision.data.synth import generate, parse_synth_uri

            synth_task, opts = parse_synth_uri(data_uri)
            source = Path(tmp) / "synth"
            generate(task=synth_task, out=source, **opts)
        report = ingest_data(source, out_dir, endpoint_url=s3_endpoint_url or None)
        if report.info.task != task:
            raise UserError(f"data_uri: holds {report.info.task!r} data but task is {task!r}")
        summary = {"accepted": report.accepted, "quarantined": len(report.quarantined),
                   "content_hash": report.info.content_hash}
        mlflow.log_metrics({"accepted": report.accepted, "quarantined": len(report.quarantined)})
        mlflow.set_tag("dataset.content_hash", report.info.content_hash)
        quarantine = Path(out_dir) / "quarantine.json"
        if quarantine.is_file():
            mlflow.log_artifact(str(quarantine), artifact_path="ingest")
    return summary


@component
def ingest(dataset: Output[Dataset], result: Output[Artifact], data_uri: str, task: str,
           s3_endpoint_url: str, experiment: str, mlflow_tracking_uri: str):
    """Copy + check the data set (quarantining bad rows) into the data contract."""
    from roadvision.components._base import set_metadata, step_result
    from roadvision.components.ingest import run_ingest

    with step_result(result, "ingest", outputs={"dataset": dataset}) as out:
        out.update(run_ingest(data_uri, dataset.path, task=task,
                              s3_endpoint_url=s3_endpoint_url, experiment=experiment,
                              tracking_uri=mlflow_tracking_uri))
    set_metadata(dataset, out)
