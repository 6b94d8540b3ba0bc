"""The record of each local pipeline run, and the list ``roadvision pipeline runs`` prints.

``run_local`` writes ``run-<id>.json`` beside the run folders under
``$ROADVISION_HOME/pipeline_runs`` twice: when the run starts (status ``running``, with the
process id) and when it ends (status, duration, registered version, promotion, where the
outputs are). A record still ``running`` whose process is gone reads as ``interrupted`` (killed,
or the machine went down). Run folders from before records existed are listed from their
steps' result JSON (status and version; no start time or duration).

The record is a file, not a folder: ``run_local`` finds the folder kfp.local made for the run
as the one new folder under the root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "start_record", "finish_record", "list_runs", "format_table",
           "record_path"]

RECORD_GLOB = "run-*.json"
#: The name kfp.local gives a run folder: the pipeline's name, then the start time.
LEGACY_PREFIX = "roadvision-training-"


@dataclass
class RunRecord:
    """One local run, as ``roadvision pipeline runs`` shows it."""

    run_id: str
    status: str  # running, succeeded, failed, interrupted (or unknown for an old folder)
    started: str = ""  # ISO 8601, UTC
    seconds: float | None = None
    task: str = ""
    model_name: str = ""
    data_uri: str = ""
    version: str | None = None
    promoted: bool | None = None
    gate_reason: str = ""
    error: str = ""
    run_dir: str = ""  # the step outputs
    log_path: str = ""
    reports: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    cached: int = 0
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def record_path(root: str | os.PathLike, run_id: str) -> Path:
    return Path(root) / f"run-{run_id}.json"


def _write(root: Path, record: RunRecord) -> Path:
    path = record_path(root, record.run_id)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    tmp.replace(path)  # a reader never sees half a record
    return path


def start_record(root: str | os.PathLike, run_id: str, params: Any,
                 log_path: str | os.PathLike) -> RunRecord:
    """Write the ``running`` record of a run that starts now; ``params`` is its RunParams."""
    record = RunRecord(run_id=run_id, status="running",
                       started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       task=str(getattr(params, "task", "")),
                       model_name=str(params.resolved_model_name()),
                       data_uri=str(getattr(params, "data_uri", "")),
                       log_path=str(log_path), pid=os.getpid())
    _write(Path(root), record)
    return record


def finish_record(root: str | os.PathLike, record: RunRecord, result: Any) -> RunRecord:
    """Complete ``record`` from a ``LocalRunResult`` and write it."""
    record = dataclasses.replace(
        record, status="succeeded" if result.succeeded else "failed",
        seconds=round(float(result.seconds), 1), version=result.version,
        promoted=result.promoted, gate_reason=result.gate_reason, error=result.error,
        run_dir=str(result.run_dir), log_path=str(result.log_path),
        reports={label: str(path) for label, path in result.reports.items()},
        steps=len(result.steps), cached=len(result.cached))
    _write(Path(root), record)
    return record


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read(path: Path) -> RunRecord | None:
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(RunRecord)}
        record = RunRecord(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None  # a damaged record: skip it rather than fail the whole list
    if record.status == "running" and not _alive(record.pid):
        record.status = "interrupted"
    return record


def _legacy(run_dir: Path) -> RunRecord:
    """A run folder without a record: what its steps' result JSON says."""
    results = []
    for path in sorted(run_dir.rglob("result")):
        try:
            step = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(step, dict) and "task" in step:
            results.append(step)
    by_task = {s["task"]: s for s in results}
    failed = [s for s in results if s.get("status") != "succeeded"]
    gate = by_task.get("gate", {})
    status = "failed" if failed else ("succeeded" if "passed" in gate else "unknown")
    stamp = run_dir.name[len(LEGACY_PREFIX):]
    started = ""
    with contextlib.suppress(ValueError):  # kfp.local names the folder after its start time
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.mktime(
            time.strptime(stamp[:19], "%Y-%m-%d-%H-%M-%S"))))
    return RunRecord(
        run_id=next((s.get("pipeline_run_id") for s in results if s.get("pipeline_run_id")),
                    "") or run_dir.name,
        status=status, started=started, version=by_task.get("register", {}).get("version"),
        model_name=by_task.get("register", {}).get("model_name", ""),
        promoted=(bool(gate["passed"]) and by_task.get("promote", {}).get("status")
                  == "succeeded") if "passed" in gate else None,
        gate_reason=gate.get("reason", ""),
        error=f"{failed[0]['task']}: {failed[0].get('error', '')}" if failed else "",
        run_dir=str(run_dir), steps=len(results))


def list_runs(root: str | os.PathLike) -> list[RunRecord]:
    """Every local run under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    records = [r for r in map(_read, sorted(root.glob(RECORD_GLOB))) if r is not None]
    by_id = {r.run_id: r for r in records}
    recorded = {Path(r.run_dir).name for r in records if r.run_dir}
    for folder in sorted(root.glob(f"{LEGACY_PREFIX}*")):
        if not folder.is_dir() or folder.name in recorded:
            continue
        found = _legacy(folder)
        if found.run_id in by_id:  # a run still going: its record learns the folder at the end
            by_id[found.run_id].run_dir = by_id[found.run_id].run_dir or str(folder)
        else:
            records.append(found)
    return sorted(records, key=lambda r: r.started, reverse=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _outcome(record: RunRecord) -> str:
    if record.version is None:
        return "-"
    promoted = {True: "promoted", False: "not promoted", None: "no gate"}[record.promoted]
    return f"{record.model_name or '?'} v{record.version} {promoted}"


def format_table(records: list[RunRecord]) -> str:
    """A plain table (paths are never wrapped: a user copies them)."""
    if not records:
        return "no local pipeline runs yet (`roadvision pipeline run --local` starts one)"
    header = ("run", "status", "started (UTC)", "duration", "model", "outputs")
    rows = [(r.run_id, r.status, r.started.replace("T", " ").rstrip("Z") or "-",
             _duration(r.seconds), _outcome(r), r.run_dir or r.log_path or "-")
            for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
             + "  " + row[-1] for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)
