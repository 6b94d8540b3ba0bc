"""Step 7, error_analysis: an HTML report of where the model fails (slices, worst samples)."""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import shutil
import tempfile
from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from roadvision.components._base import component

__all__ = ["run_error_analysis", "error_analysis"]


def run_error_analysis(bundle_dir: str | Path, data_dir: str | Path, report_path: str | Path, *,
                       split: str = "test", pipeline_run_id: str | None = None,
                       experiment: str = "roadvision", tracking_uri: str = "") -> Path:
    """Write the error analysis HTML to ``report_path`` (a file) and log it to MLflow.

    The model is not registered yet at this step, so the title names the bundle; the register
    step retitles the copy it keeps beside the registered version (``report.html``).
    """
    import mlflow

    from roadvision.components._base import step_run
    from roadvision.evaluation import error_analysis as analyse

    with step_run("error_analysis", pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri), tempfile.TemporaryDirectory() as tmp:
        html = Path(analyse(bundle_dir, data_dir, tmp, split=split))
        # A report may come with images beside it: log the folder, hand KFP the page.
        mlflow.log_artifacts(str(html.parent), artifact_path="error_analysis")
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html, report_path)
    return Path(report_path)


@component
def error_analysis(model: Input[Model], data: Input[Dataset], report: Output[HTML],
                   result: Output[Artifact], experiment: str, mlflow_tracking_uri: str):
    """Error analysis of the model on the test split (HTML, shown in the KFP UI)."""
    from roadvision.components._base import name_output, step_result
    from roadvision.components.error_analysis import run_error_analysis

    name_output(report, "error_analysis.html")  # a browser opens the local file as a page
    with step_result(result, "error_analysis", outputs={"report": report}) as out:
        run_error_analysis(model.path, data.path, report.path, experiment=experiment,
                           tracking_uri=mlflow_tracking_uri)
        out["split"] = "test"
