"""Every step's result JSON (``components/_base.py::step_result``) and how the local run reads
it (``pipelines/local.py``): by the steps' own names, cached results included, no scraping."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from roadvision.components._base import step_result, write_json
from roadvision.components.run_params import RunParams
from roadvision.errors import UserError
from roadvision.pipelines.local import _collect


def _artifact(path: Path) -> SimpleNamespace:
    """What a KFP output artifact offers a step: a path to write, a URI to name."""
    return SimpleNamespace(path=str(path), uri=str(path))


def test_a_step_result_names_the_step_and_its_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ROADVISION_PIPELINE_RUN_ID", "run-7")
    report = _artifact(tmp_path / "report")
    with step_result(_artifact(tmp_path / "result"), "evaluate", "evaluate-member-1",
                     outputs={"report": report}) as out:
        out["headline"] = 0.5
    assert json.loads((tmp_path / "result").read_text()) == {
        "schema": 1, "step": "evaluate", "task": "evaluate-member-1", "status": "succeeded",
        "pipeline_run_id": "run-7", "artifacts": {"report": report.uri}, "headline": 0.5}


def test_a_failed_step_writes_its_error_then_raises(tmp_path):
    with pytest.raises(UserError, match="data_uri: holds"), \
            step_result(_artifact(tmp_path / "result"), "ingest") as out:
        out["accepted"] = 3
        raise UserError("data_uri: holds 'lanes' data but task is 'roadwork'")
    result = json.loads((tmp_path / "result").read_text())
    assert result["status"] == "failed" and result["task"] == "ingest"
    assert result["error"] == "UserError: data_uri: holds 'lanes' data but task is 'roadwork'"
    assert result["accepted"] == 3  # what the step had found before it failed


def _result(folder: Path, task: str, run_id: str = "now", **fields) -> Path:
    path = folder / "result"
    write_json(path, {"schema": 1, "step": task.split("-")[0], "task": task,
                      "status": "succeeded", "pipeline_run_id": run_id, "artifacts": {},
                      **fields})
    return path


def test_the_local_run_reads_results_by_own_name_cached_ones_too(tmp_path):
    run, old, cache = tmp_path / "run", tmp_path / "old-run", tmp_path / "cache"
    report = tmp_path / "gate.md"
    report.write_text("# gate")
    # a cached step left nothing in this run's folder: its result is in the run that made it
    cached = _result(old / "for-loop-1-iteration-0" / "evaluate", "evaluate-student", "old",
                     metrics={"headline": 0.8})
    write_json(cache / "abc123def456ffff.json",
               {"Output": 0.8, "result": {"uri": str(cached), "metadata": {}}})
    _result(run / "register", "register", version="2")
    # folder names are KFP's (gate-x here); the reader goes by the result's own "task"
    _result(run / "condition-2" / "gate-x", "gate", passed=True, reason="first model",
            artifacts={"report_md": str(report)})
    _result(run / "condition-2" / "promote", "promote", version="2")
    log = tmp_path / "pipeline.log"
    log.write_text("12:00:00.000 - INFO - Task 'evaluate-2' cache hit (key=abc123def456); ...\n")

    result = _collect(run, log, 1.0, RunParams(model_name="m"), cache)
    assert set(result.steps) == {"register", "gate", "promote", "evaluate-student"}
    assert result.cached == ["evaluate-student"]
    assert result.metrics == {"headline": 0.8}
    assert result.version == "2" and result.promoted is True and result.succeeded
    assert result.gate_reason == "first model"
    assert result.reports == {"gate (markdown)": report}


def test_a_failed_step_fails_the_local_run_with_its_error(tmp_path):
    run = tmp_path / "run"
    _result(run / "check-params", "check_params", members=[0])
    write_json(run / "ingest" / "result", {"task": "ingest", "status": "failed",
                                           "error": "UserError: data_uri: holds lanes"})
    log = tmp_path / "pipeline.log"
    log.write_text("")
    result = _collect(run, log, 1.0, RunParams(), tmp_path / "cache")
    assert not result.succeeded and result.promoted is None and result.version is None
    assert result.error == "ingest: UserError: data_uri: holds lanes"
