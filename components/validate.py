"""Step 2, validate: the ingested data set against the contract, every row and file.

A failure here stops the run before any GPU time is spent; the report lists each problem by
row and column (the first 50 go into the error message and all into the MLflow run).
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from roadvision.components._base import component

__all__ = ["run_validate", "validate"]


def run_validate(data_dir: str | Path, report_path: str | Path, *,
                 pipeline_run_id: str | None = None, experiment: str = "roadvision",
                 tracking_uri: str = "") -> dict[str, Any]:
    """Validate ``data_dir``; write a markdown report; raise ``ContractError`` when not ok."""
    import mlflow

    from roadvision.components._base import step_run
    from roadvision.data.contract import ContractError
    from roadvision.data.validate import validate_dataset

    with step_run("validate", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri):
        report = validate_dataset(data_dir)
        lines = [f"# Data validation: {'ok' if report.ok else 'FAILED'}", "",
                 f"{report.num_rows} rows, {len(report.problems)} problem(s).", ""]
        lines += [f"- {problem}" for problem in report.problems[:1000]]
        Path(report_path).write_text("\n".join(lines) + "\n")
        mlflow.log_metrics({"rows": report.num_rows, "problems": len(report.problems)})
        mlflow.log_artifact(str(report_path), artifact_path="validate")
    if not report.ok:
        shown = "\n".join(f"  {p}" for p in report.problems[:50])
        raise ContractError(f"{data_dir}: {len(report.problems)} problem(s):\n{shown}")
    return {"rows": report.num_rows, "problems": 0}


@component
def validate(dataset: Input[Dataset], report: Output[Markdown], result: Output[Artifact],
             experiment: str, mlflow_tracking_uri: str) -> int:
    """Check the data set against the contract; returns the number of rows."""
    from roadvision.components._base import step_result
    from roadvision.components.validate import run_validate

    with step_result(result, "validate", outputs={"report": report}) as out:
        out.update(run_validate(dataset.path, report.path, experiment=experiment,
                                tracking_uri=mlflow_tracking_uri))
    return out["rows"]
