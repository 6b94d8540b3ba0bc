"""monitor_drift: compare the payload log with the model's training reference (drift check).

Not a step of the training DAG: a pipeline of its own (or a recurring run) that a retraining
trigger can read. The model comes in as an artifact (the bundle, holding ``drift_reference.npz``
from ``roadvision monitor reference``) or, with ``reference_data``, the reference is sampled from
that data set now. Outputs: the HTML report (shown in the KFP UI), the result JSON (``drifted``,
every test's p-value) and, when ``pushgateway`` is set, the Prometheus figures.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path

from kfp.dsl import HTML, Artifact, Input, Model, Output

from roadvision.components._base import component

__all__ = ["run_monitor_drift", "monitor_drift"]


def run_monitor_drift(bundle_dir: str | Path, logged: str, report_path: str | Path, *,
                      reference_data: str = "", model_name: str = "", rows: int = 0,
                      alpha: float = 0.05, pushgateway: str = "") -> dict:
    """The check as ``roadvision monitor drift`` runs it; returns the result as a dict."""
    from roadvision.monitoring.check import CheckOptions, resolve_reference, run_check

    reference, bundle = resolve_reference(reference_data or bundle_dir,
                                          bundle_dir if reference_data else None)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    outcome = run_check(reference, bundle, CheckOptions(
        logged=logged, model=model_name or None, rows=rows or None, alpha=alpha,
        report=str(report_path), pushgateway=pushgateway or None))
    return outcome.result.as_dict()


@component
def monitor_drift(model: Input[Model], report: Output[HTML], result: Output[Artifact],
                  logged_uri: str, reference_data: str = "", model_name: str = "",
                  rows: int = 0, alpha: float = 0.05, pushgateway: str = ""):
    """Drift of the logged traffic against the model's training reference."""
    from roadvision.components._base import name_output, step_result
    from roadvision.components.monitor_drift import run_monitor_drift

    name_output(report, "drift.html")
    with step_result(result, "monitor_drift", outputs={"report": report}) as out:
        found = run_monitor_drift(model.path, logged_uri, report.path,
                                  reference_data=reference_data, model_name=model_name,
                                  rows=rows, alpha=alpha, pushgateway=pushgateway)
        out.update(drifted=found["drifted"], n_current=found["n_current"],
                   tests={t["name"]: t["p_value"] for t in
                          ([found["input"]] if found["input"] else [])
                          + found["image"] + found["prediction"]})
