"""Step 11, gate: may the challenger replace the champion?

The current ``@champion`` is downloaded and evaluated on the same frozen test split as the
challenger (never compared on numbers from another data set), then ``roadvision.gate.decide``
applies the rule. The decision and its reason are tagged on the challenger's version and the
report is written as markdown and HTML; the step's boolean output drives ``dsl.If``.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path
from typing import Any

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from roadvision.components._base import component

__all__ = ["run_gate", "gate"]


def run_gate(metrics_path: str | Path, data_dir: str | Path, version: str, *, task: str,
             model_name: str = "", tta: str = "none", min_delta: float = 0.01,
             slice_tolerance: float = 0.05, absolute_floor: float = 0.2,
             min_slice_size: int = 20, markdown_path: str | Path | None = None,
             html_path: str | Path | None = None, pipeline_run_id: str | None = None,
             experiment: str = "roadvision", tracking_uri: str = "") -> dict[str, Any]:
    """Decide; tag the version; write the reports. Returns the decision as a dict."""
    import tempfile

    import mlflow

    from roadvision import registry
    from roadvision.components._base import (
        finish_pipeline_run,
        log_metrics,
        read_json,
        step_run,
    )
    from roadvision.evaluation import evaluate
    from roadvision.gate import GateConfig, decide
    from roadvision.registry import resolve_model_name

    name = resolve_model_name(model_name, task)
    cfg = GateConfig(min_delta=min_delta, slice_tolerance=slice_tolerance,
                     absolute_floor=absolute_floor, min_slice_size=int(min_slice_size)).validate()
    challenger = read_json(metrics_path)
    with step_run("gate", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"model_name": name, "version": version, **vars(cfg)}):
        current = registry.champion(name)
        champion_metrics = None
        if current is not None and current.version != str(version):
            with tempfile.TemporaryDirectory() as tmp:
                bundle = registry.download_bundle(current.uri, Path(tmp) / "champion")
                champion_metrics = evaluate(bundle, data_dir, split="test", tta=tta)
            log_metrics(champion_metrics, prefix="champion.")
        decision = decide(challenger, champion_metrics, cfg, challenger_version=str(version),
                          champion_version=current.version if champion_metrics else None)
        registry.tag_version(name, version, {
            "gate.decision": decision.decision, "gate.reason": decision.reason,
            "gate.champion_version": decision.champion_version or "none"})  # config: run params
        mlflow.set_tags({"gate.decision": decision.decision, "gate.reason": decision.reason[:5000]})
        for path, text in ((markdown_path, decision.to_markdown()),
                           (html_path, decision.to_html())):
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)
        mlflow.log_text(decision.to_markdown(), "gate/gate_report.md")
        mlflow.log_text(decision.to_html(), "gate/gate_report.html")
        finish_pipeline_run(pipeline_run_id)
    print(f"gate: {decision.decision.upper()}: {decision.reason}")
    return {**decision.to_dict(), "model_name": name}


@component
def gate(metrics: Input[Metrics], data: Input[Dataset], version: str, report_md: Output[Markdown],
         report_html: Output[HTML], result: Output[Artifact], task: str, model_name: str,
         tta: str, min_delta: float, slice_tolerance: float, absolute_floor: float,
         min_slice_size: int, experiment: str, mlflow_tracking_uri: str) -> bool:
    """Challenger vs champion on the same test split; True = promote."""
    from roadvision.components._base import name_output, step_result
    from roadvision.components.gate import run_gate

    name_output(report_md, "gate_report.md")  # files a browser or an editor opens as they are
    name_output(report_html, "gate_report.html")
    outputs = {"report_md": report_md, "report_html": report_html}
    with step_result(result, "gate", outputs=outputs) as out:
        out.update(run_gate(metrics.path, data.path, version, task=task, model_name=model_name,
                            tta=tta, min_delta=min_delta, slice_tolerance=slice_tolerance,
                            absolute_floor=absolute_floor, min_slice_size=min_slice_size,
                            markdown_path=report_md.path, html_path=report_html.path,
                            experiment=experiment, tracking_uri=mlflow_tracking_uri))
    return bool(out["passed"])
