"""``roadvision pipeline runs``: the local runs' records, as ``run_local`` writes them.

The records are made by the writer ``run_local`` calls (``start_record``/``finish_record``),
the step results of an old run folder by the steps' own writer (``step_result``); the real
end-to-end run that writes both is ``tests/test_pipeline_local.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _cli import run_main

from roadvision.pipelines.local import LocalRunResult
from roadvision.pipelines.run_profiles import from_run_profile
from roadvision.pipelines.runs import finish_record, list_runs, record_path, start_record


@dataclass
class _Artifact:  # what step_result reads of a KFP artifact: its local path
    path: str
    uri: str = ""


def _finished(root: Path, run_id: str, *, promoted: bool, version: str) -> Path:
    params = from_run_profile("tiny", model_name="rv-runs")
    record = start_record(root, run_id, params, root / f"pipeline-{run_id}.log")
    run_dir = root / f"roadvision-training-{run_id}"
    report = run_dir / "gate" / "report_html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    result = LocalRunResult(run_dir=run_dir, log_path=root / f"pipeline-{run_id}.log",
                            seconds=125.4, succeeded=True, steps={"a": {}, "b": {}},
                            cached=["a"], model_name="rv-runs", version=version,
                            promoted=promoted, gate_reason="reason",
                            reports={"gate (html)": report})
    finish_record(root, record, result)
    return run_dir


def _old_run_folder(root: Path) -> Path:
    """A run folder from before records: only its steps' result JSON."""
    from roadvision.components._base import step_result

    folder = root / "roadvision-training-2026-01-02-03-04-05-000001"
    for task, fields in (("register", {"version": "7", "model_name": "old-model"}),
                         ("gate", {"passed": False, "reason": "below the floor"})):
        path = folder / task / "result"
        path.parent.mkdir(parents=True)
        with step_result(_Artifact(str(path)), task) as out:
            out.update(fields)
    return folder


def test_runs_lists_records_newest_first_with_outcome(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    first_dir = _finished(root, "aaaa", promoted=True, version="1")
    # the second run started later: rewrite its start time so the order is not a race
    second_dir = _finished(root, "bbbb", promoted=False, version="2")
    data = json.loads(record_path(root, "bbbb").read_text())
    data["started"] = "2999-01-01T00:00:00Z"
    record_path(root, "bbbb").write_text(json.dumps(data))
    old = _old_run_folder(root)

    records = list_runs(root)
    assert [r.run_id for r in records][:2] == ["bbbb", "aaaa"]
    newest, first = records[0], records[1]
    assert newest.status == "succeeded" and newest.promoted is False and newest.version == "2"
    assert newest.run_dir == str(second_dir) and first.run_dir == str(first_dir)
    assert first.seconds == 125.4 and first.steps == 2 and first.cached == 1
    assert first.reports["gate (html)"].endswith("report_html")
    legacy = next(r for r in records if r.run_dir == str(old))
    assert (legacy.status, legacy.version, legacy.promoted, legacy.model_name) == \
        ("succeeded", "7", False, "old-model")

    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
    code, out, _ = run_main(capsys, "pipeline", "runs", "--root", root)
    assert code == 0
    assert "rv-runs v1 promoted" in out and "rv-runs v2 not promoted" in out
    assert "2m05s" in out and str(first_dir) in out and "old-model v7 not promoted" in out
    assert out.index("bbbb") < out.index("aaaa")  # newest first

    code, out, _ = run_main(capsys, "pipeline", "runs", "--root", root, "--json")
    listed = json.loads(out)
    assert code == 0 and [r["run_id"] for r in listed][:2] == ["bbbb", "aaaa"]
    assert listed[1]["promoted"] is True and listed[1]["run_dir"] == str(first_dir)


def test_a_run_whose_process_died_reads_interrupted(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    start_record(root, "live", from_run_profile("tiny"), root / "live.log")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = start_record(root, "dead", from_run_profile("tiny"), root / "dead.log")
    data = json.loads(record_path(root, record.run_id).read_text())
    data["pid"] = dead.pid  # exited and reaped: no such process now
    record_path(root, record.run_id).write_text(json.dumps(data))
    (root / "run-damaged.json").write_text("{not json")

    # the live run's steps have written results into its folder; the record has no folder yet
    from roadvision.components._base import step_result

    result = root / "roadvision-training-2026-12-01-17-36-09-484285" / "check-params" / "result"
    result.parent.mkdir(parents=True)
    monkeypatch.setenv("ROADVISION_PIPELINE_RUN_ID", "live")
    with step_result(_Artifact(str(result)), "check_params"):
        pass

    runs = {r.run_id: r for r in list_runs(root)}
    assert {k: r.status for k, r in runs.items()} == {"live": "running", "dead": "interrupted"}
    assert runs["live"].run_dir == str(result.parent.parent)  # listed once, with its folder


def test_no_runs_says_how_to_start_one(tmp_path, capsys):
    code, out, _ = run_main(capsys, "pipeline", "runs", "--root", tmp_path / "none")
    assert code == 0 and "no local pipeline runs yet" in out
