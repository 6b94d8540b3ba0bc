"""The real compiled pipeline, run locally with kfp.local into a temporary MLflow store.

Run 1 trains a 2-member ensemble on a tiny data set, registers the distilled student and
promotes it (first model, floor only). Run 2 is the same run with a gate that cannot be met:
caching answers the data and training steps, register/gate run again (never cached), the new
version is registered and refused with a reason naming the headline metric, and the champion
stays where it was.
"""

from __future__ import annotations

import json

import pytest
from _pipeline import (  # noqa: F401 (fixtures)
    _empty_mlflow_db,
    mlflow_store,
    roadwork_dataset,
)

from roadvision import registry
from roadvision.errors import UserError
from roadvision.pipelines.compile import DEFAULT_OUT
from roadvision.pipelines.local import run_local
from roadvision.pipelines.run_profiles import from_run_profile

#: Every step's own name (the ``task`` of its result JSON; KFP's generated names never appear).
EVERY_STEP = {"check_params", "ingest", "validate", "split", "gps_weighting", "train-member-0",
              "train-member-1", "evaluate-member-0", "evaluate-member-1", "distill",
              "keep_student", "evaluate-student", "error_analysis", "register", "gate",
              "promote"}


@pytest.mark.slow
@pytest.mark.timeout(900)  # two whole DAG runs, each step a subprocess that imports torch
def test_compiled_pipeline_registers_promotes_then_gate_refuses(tmp_path, mlflow_store,  # noqa: F811
                                                                monkeypatch):
    import mlflow

    monkeypatch.setenv("ROADVISION_PIPELINE_RUN_ID", "")  # run_local sets it; restore after
    data = roadwork_dataset(tmp_path / "data")
    params = from_run_profile("tiny", data_uri=str(data), members=2, model_name="rv-e2e")
    runs = tmp_path / "runs"

    first = run_local(params, pipeline_file=DEFAULT_OUT, root=runs, echo=False)
    assert first.succeeded, first.summary() + "\n" + first.log_path.read_text()[-3000:]
    assert set(first.steps) == EVERY_STEP and not first.cached
    assert {s["status"] for s in first.steps.values()} == {"succeeded"}
    assert {s["pipeline_run_id"] for s in first.steps.values()} == {first.pipeline_run_id}
    assert first.version == "1" and first.promoted is True
    assert first.steps["check_params"]["members"] == [0, 1]
    assert first.steps["ingest"]["accepted"] == 40
    assert first.steps["train-member-1"]["member"] == 1
    assert first.steps["gate"]["decision"] == "promote"
    assert first.steps["promote"]["model_uri"] == "models:/rv-e2e/1"
    assert first.metrics == first.steps["evaluate-student"]["metrics"] != {}
    champion = registry.get_version("models:/rv-e2e@champion")
    assert champion.version == "1" and "challenger" in champion.aliases
    tags = champion.tags
    weighted = json.loads((first.run_dir / "gps-weighting" / "weighted_dataset" /
                           "dataset.json").read_text())
    assert tags["dataset.content_hash"] == weighted["content_hash"] != ""
    assert tags["code_version"].startswith(("git:", "roadvision=="))
    assert tags["pipeline_run_id"] == first.pipeline_run_id
    assert tags["task"] == "roadwork"
    # version tags keep 6 significant digits (registry.publish): at most 5e-6 relative off
    assert float(tags["metric.headline"]) == pytest.approx(first.metrics["headline"], rel=1e-5)
    # every slice metric and the teachers' headlines are metrics of the registering run (and
    # of the logged model); the version keeps a few tags a person can read
    run_metrics = registry.RegistryClient().mlflow.get_run(champion.run_id).data.metrics
    assert any(k.startswith("slices.weather.") for k in run_metrics)
    assert {"teacher_0.headline", "teacher_1.headline"} <= set(run_metrics)
    assert not any(k.startswith("metric.slices.") for k in tags)
    assert len(tags) <= 15, sorted(tags)  # MLflow's version page lists every tag
    assert tags["gate.decision"] == "promote" and "first model" in tags["gate.reason"]
    assert registry.alias_note(tags, "champion")["by"] == f"pipeline:{first.pipeline_run_id}"
    assert first.reports["error analysis"].name == "error_analysis.html"  # a browser shows it
    assert first.reports["error analysis"].read_text().lstrip().lower().startswith(
        ("<!doctype", "<html"))
    assert "PROMOTE" in first.reports["gate (markdown)"].read_text()
    # one MLflow parent run for the pipeline run, a nested run per step under it
    parent = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`roadvision.kind` = 'pipeline'")
    assert len(parent) == 1
    # the parent run carries the pipeline's parameters and the student's headline numbers
    assert parent[0].data.params["task"] == "roadwork"
    assert "mlflow_tracking_uri" not in parent[0].data.params  # the store, maybe credentials
    assert parent[0].data.metrics["student.headline"] == pytest.approx(first.metrics["headline"])
    steps = mlflow.search_runs(search_all_experiments=True, output_format="list",
                               filter_string=f"tags.`mlflow.parentRunId` = "
                                             f"'{parent[0].info.run_id}'")
    names = {r.info.run_name for r in steps}
    assert {"ingest", "train-member-0", "train-member-1", "distill", "register", "gate",
            "promote"} <= names
    train_run = next(r for r in steps if r.info.run_name == "train-member-0")
    assert "best_metric" in train_run.data.metrics and train_run.data.params["epochs"] == "1"

    second = run_local(params.replace(min_delta=2.0), pipeline_file=DEFAULT_OUT, root=runs,
                       echo=False)
    assert second.succeeded, second.summary()
    assert {"ingest", "split", "train-member-0", "train-member-1", "distill",
            "evaluate-student"} <= set(second.cached)
    # cached results are the first run's; register and gate never cache
    assert second.steps["distill"]["pipeline_run_id"] == first.pipeline_run_id
    assert second.steps["gate"]["pipeline_run_id"] == second.pipeline_run_id
    assert "register" not in second.cached and "gate" not in second.cached
    assert "promote" not in second.steps  # dsl.If held it back
    assert second.version == "2" and second.promoted is False
    assert second.gate_reason == second.steps["gate"]["reason"]
    assert second.gate_reason.startswith("headline mcc")
    refused = registry.get_version("rv-e2e/2")
    assert refused.tags["gate.decision"] == "refuse"
    assert refused.tags["gate.reason"].startswith("headline mcc")
    assert "min_delta +2.0000" in refused.tags["gate.reason"]
    assert registry.champion("rv-e2e").version == "1"
    assert "challenger" in refused.aliases


def test_bad_parameters_fail_before_anything_runs(tmp_path, mlflow_store):  # noqa: F811
    from conftest import free_port

    root = tmp_path / "runs"
    with pytest.raises(UserError, match="^members: 99 is out of range"):
        run_local(from_run_profile("tiny", members=99), root=root, echo=False)
    with pytest.raises(UserError, match="^data_uri: .*does not exist"):
        run_local(from_run_profile("tiny", data_uri=str(tmp_path / "missing")), root=root,
                  echo=False)
    with pytest.raises(UserError, match="^mlflow_tracking_uri: .*unreachable"):
        run_local(from_run_profile("tiny", mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}"),
                  root=root, echo=False)
    assert not root.exists() or not any(p.is_dir() for p in root.iterdir())


def test_cli_reports_bad_parameter_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "roadvision.cli", "pipeline", "run", "--local",
                           "--run-profile", "tiny", "--set", "slice_tolerance=-2"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: slice_tolerance: -2.0 is out of range [0.0, 2.0]"]


def test_ingest_step_generates_synth_uris(tmp_path, mlflow_store):  # noqa: F811
    """``synth://`` data URIs are generated, then ingested like any folder (demo, CI)."""
    import roadvision.data.synth as synth

    if not hasattr(synth, "generate"):
        pytest.skip("the procedural generator (roadvision.data.synth.generate) is not there yet")
    from roadvision.components.ingest import run_ingest
    from roadvision.data.contract import read_info, read_manifest

    summary = run_ingest("synth://roadwork?n=12&size=tiny&seed=3", tmp_path / "raw",
                         task="roadwork", pipeline_run_id="t")
    info = read_info(tmp_path / "raw")
    assert summary["accepted"] == 12 == len(read_manifest(tmp_path / "raw"))
    assert summary["content_hash"] == info.content_hash and info.synthetic
    with pytest.raises(UserError, match="^data_uri: holds 'roadwork' data but task is 'lanes'"):
        run_ingest("synth://roadwork?n=8&size=tiny", tmp_path / "raw2", task="lanes")
