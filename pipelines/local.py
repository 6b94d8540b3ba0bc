"""Run the compiled training pipeline on this machine with ``kfp.local`` (no cluster).

The pipeline is compiled to YAML first and that YAML is what runs: exactly the DAG a cluster
would get (ParallelFor, Collected, If included). ``SubprocessRunner(use_venv=False)`` runs each
step as a subprocess of this interpreter, where roadvision is installed; the components install
nothing (see ``components/_base.py``), so no step touches a package index. kfp.local ignores
the Kubernetes settings (GPU, node selector, toleration, Secrets, retries) with a warning.

Outputs go under ``.roadvision/pipeline_runs/<run>/<task>/``; kfp.local's own chatter (the
executor input of every step) goes to ``pipeline.log`` in the run folder, and one line per step
is echoed to the console.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from roadvision.pipelines.params import RunParams

from roadvision.errors import UserError

__all__ = ["LocalRunResult", "run_local", "compile_to"]

_TASK_LINE = re.compile(r"(Executing task|Task .* finished with status|Pipeline .* finished)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class LocalRunResult:
    """What a local run produced (paths are on this machine)."""

    run_dir: Path
    log_path: Path
    seconds: float
    succeeded: bool
    tasks: dict[str, str] = field(default_factory=dict)  # task folder -> "SUCCESS"/"FAILURE"
    model_name: str = ""
    version: str | None = None
    promoted: bool | None = None
    gate_reason: str = ""
    error: str = ""  # the last exception line of a failed step
    metrics: dict[str, Any] = field(default_factory=dict)  # the registered model's test metrics
    reports: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"pipeline {'succeeded' if self.succeeded else 'FAILED'} in "
                 f"{self.seconds:.0f} s ({len(self.tasks)} tasks); outputs in {self.run_dir}"]
        if self.version:
            lines.append(f"registered {self.model_name} version {self.version}: "
                         f"{'promoted to @champion' if self.promoted else 'not promoted'}")
        if self.gate_reason:
            lines.append(f"gate: {self.gate_reason}")
        for name, path in self.reports.items():
            lines.append(f"report {name}: {path}")
        if not self.succeeded:
            if self.error:
                lines.append(f"error: {self.error}")
            lines.append(f"log: {self.log_path}")
        return "\n".join(lines)


class _Tee(io.TextIOBase):
    """Everything to the log file; step start/finish lines also to the console."""

    def __init__(self, log: TextIO, console: TextIO | None):
        self.log, self.console, self._buffer = log, console, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.console is not None:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                if _TASK_LINE.search(line):
                    self.console.write(_ANSI.sub("", line).strip() + "\n")
                    self.console.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def compile_to(path: str | os.PathLike, settings=None) -> Path:
    """Compile the training pipeline (with ``settings``) to ``path``."""
    from kfp import compiler
    from roadvision.pipelines.training import build_pipeline

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings), str(path))
    return path


def run_local(params: RunParams, *, pipeline_file: str | os.PathLike | None = None,
              root: str | os.PathLike | None = None, echo: bool = True) -> LocalRunResult:
    """Validate ``params`` and run the pipeline locally; never raises on a failed step (the
    result says which failed), only on bad parameters.

    ``pipeline_file``: a compiled pipeline YAML to run (default: compile the current code into
    the run folder first). ``root``: where runs go (default ``.roadvision/pipeline_runs``).
    """
    from kfp import components, local

    from roadvision.registry import configure, roadvision_home

    params.validate(check_data=True, check_mlflow=True)
    # The steps are subprocesses: they find the store through the environment.
    if params.mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = params.mlflow_tracking_uri
    os.environ["MLFLOW_TRACKING_URI"] = configure(params.mlflow_tracking_uri or None)
    os.environ.setdefault("ROADVISION_QUIET", "1")  # no progress bars inside step logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    root = Path(root) if root else roadvision_home() / "pipeline_runs"
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = root / f"pipeline-{stamp}-{os.getpid()}.log"
    if pipeline_file is None:
        # The cluster's DAG with one local difference: no retries. kfp.local honours retry
        # policies with their backoff, and a local failure is a bug or bad input that retrying
        # minutes later will not fix; it would only delay the message.
        from roadvision.pipelines.training import ClusterSettings

        pipeline_file = compile_to(root / f"pipeline-{stamp}-{os.getpid()}.yaml",
                                   ClusterSettings(io_retries=0))
    pipeline_file = Path(pipeline_file)
    if not pipeline_file.is_file():
        raise UserError(f"pipeline file {pipeline_file} does not exist")

    before = set(root.iterdir())
    started = time.perf_counter()
    succeeded = True
    console = sys.__stdout__ if echo else None
    with open(log_path, "w") as log, warnings.catch_warnings():
        # kfp.local warns for every Kubernetes-only setting and for a non-"python" image name:
        # both are expected here (the settings are for the cluster; the image is our own).
        warnings.simplefilter("ignore")
        tee = _Tee(log, console)
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
                       raise_on_error=False)
            pipeline = components.load_component_from_file(str(pipeline_file))
            try:
                pipeline(**params.to_dict())
            except Exception as exc:  # kfp.local raises for DAG-level failures
                succeeded = False
                print(f"pipeline error: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    new_dirs = sorted((p for p in set(root.iterdir()) - before if p.is_dir()),
                      key=lambda p: p.stat().st_mtime)
    if not new_dirs:
        raise UserError(f"the local run left no output under {root}; see {log_path}")
    result = _collect(new_dirs[-1], log_path, seconds, params)
    result.succeeded = succeeded and bool(result.tasks) and \
        all(v == "SUCCESS" for v in result.tasks.values())
    return result


def _outputs(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "executor_output.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: v for k, v in (data.get("parameterValues") or {}).items()}


def _collect(run_dir: Path, log_path: Path, seconds: float, params: RunParams) -> LocalRunResult:
    """Read the run folder and the log: task statuses, registered version, gate, reports."""
    statuses: dict[str, str] = {}
    error = ""
    lines = _ANSI.sub("", log_path.read_text(errors="replace")).splitlines()
    for index, line in enumerate(lines):
        if "Traceback (most recent call last)" in line:
            # the exception line is the next one indented like "Traceback" itself
            indent = len(line) - len(line.lstrip())
            for follow in lines[index + 1:]:
                if follow.strip() and len(follow) - len(follow.lstrip()) == indent:
                    error = follow.strip()
                    break
    for line in lines:
        match = re.search(r"Task '([^']+)' finished with status (\w+)", line)
        if match:
            name = match[1]
            key, n = name, 1
            while key in statuses:  # ParallelFor iterations share a task name
                n += 1
                key = f"{name}#{n}"
            statuses[key] = match[2]
    result = LocalRunResult(run_dir=run_dir, log_path=log_path, seconds=seconds,
                            succeeded=False, tasks=statuses, error=error,
                            model_name=params.resolved_model_name())
    register_dir, gate_dir = _find(run_dir, "register"), _find(run_dir, "gate")
    if register_dir:
        result.version = _outputs(register_dir).get("Output")
    if gate_dir:
        result.promoted = bool(_outputs(gate_dir).get("Output"))
        for name, file in (("gate (markdown)", "report_md"), ("gate (html)", "report_html")):
            if (gate_dir / file).is_file():
                result.reports[name] = gate_dir / file
        if (gate_dir / "report_md").is_file():
            text = (gate_dir / "report_md").read_text()
            match = re.search(r"\*\*Reason:\*\* (.*)", text)
            result.gate_reason = match[1] if match else ""
    analysis = _find(run_dir, "error-analysis")
    if analysis and (analysis / "report").is_file():
        result.reports["error analysis"] = analysis / "report"
    student_eval = _find(run_dir, "evaluate-2") or _find(run_dir, "evaluate")
    if student_eval and (student_eval / "metrics").is_file():
        try:
            result.metrics = json.loads((student_eval / "metrics").read_text())
        except ValueError:
            result.metrics = {}
    return result


def _find(run_dir: Path, task: str) -> Path | None:
    """A top-level task folder by its DAG name (kfp.local names folders after tasks)."""
    path = run_dir / task
    return path if path.is_dir() else None
