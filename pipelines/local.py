"""Run the compiled training pipeline on this machine with ``kfp.local`` (no cluster).

The pipeline is compiled to YAML first and that YAML is what runs: exactly the DAG a cluster
would get (ParallelFor, Collected, If included). ``SubprocessRunner(use_venv=False)`` runs each
step as a subprocess of this interpreter, where roadvision is installed; the components install
nothing (see ``components/_base.py``), so no step touches a package index. kfp.local ignores
the Kubernetes settings (GPU, node selector, toleration, Secrets, retries) with a warning.

Outputs go under ``$ROADVISION_HOME/pipeline_runs/<run>/<task>/`` (``roadvision_home()``);
kfp.local's own chatter (the executor input of every step) goes to ``pipeline.log`` in the run
folder, and one line per step is echoed to the console.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from roadvision.errors import UserError
from roadvision.pipelines.params import RunParams

__all__ = ["LocalRunResult", "run_local", "compile_to"]

_TASK_LINE = re.compile(r"(Executing task|Task .* finished with status|Task .* cache hit|"
                        r"Pipeline .* finished)")
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
    cached: list[str] = field(default_factory=list)  # steps answered from the cache
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> name -> path/value
    pipeline_run_id: str = ""
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
              root: str | os.PathLike | None = None, cache: bool = True,
              echo: bool = True) -> LocalRunResult:
    """Validate ``params`` and run the pipeline locally; never raises on a failed step (the
    result says which failed), only on bad parameters.

    ``pipeline_file``: a compiled pipeline YAML to run (default: compile the current code into
    the run folder first). ``root``: where runs go (default ``$ROADVISION_HOME/pipeline_runs``).
    ``cache``: reuse outputs of steps whose inputs did not change (KFP caching, as on a
    cluster: register, gate and promote never cache); the cache lives under ``root``.
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
    # The ParallelFor members train at once as subprocesses on THIS machine's cores; each torch
    # defaults to every core, and 2 x 2 OpenMP threads on 2 cores ran 15-25x slower per image
    # than 2 x 1 (spinning barriers). Share the cores out (a cluster's pods are not affected).
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // max(1, int(params.members)))))

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

    # Steps find their MLflow parent run through this (see components/_base.py).
    run_id = uuid.uuid4().hex[:16]
    os.environ["ROADVISION_PIPELINE_RUN_ID"] = run_id
    before = set(root.iterdir())
    started = time.perf_counter()
    succeeded = True
    console = sys.__stdout__ if echo else None
    with open(log_path, "w") as log, warnings.catch_warnings():
        # kfp.local warns for every Kubernetes-only setting and for a non-"python" image name:
        # both are expected here (the settings are for the cluster; the image is our own).
        warnings.simplefilter("ignore")
        tee = _Tee(log, console)
        # kfp.local logs cache hits with logging.info outside its own log context: catch them.
        handler = logging.StreamHandler(tee)
        handler.setFormatter(logging.Formatter(  # the same line format as kfp.local's own
            "%(asctime)s.%(msecs)03d - %(levelname)s - %(message)s", datefmt="%H:%M:%S"))
        root_logger = logging.getLogger()
        original_print = builtins.print
        old_level = root_logger.level
        root_logger.addHandler(handler)
        root_logger.setLevel(logging.INFO)
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
                       raise_on_error=False, enable_caching=cache,
                       cache_root=str(root / "cache"))
            pipeline = components.load_component_from_file(str(pipeline_file))
            try:
                pipeline(**params.to_dict())
            except Exception as exc:  # kfp.local raises for DAG-level failures
                succeeded = False
                print(f"pipeline error: {type(exc).__name__}: {exc}")
            finally:
                root_logger.removeHandler(handler)
                root_logger.setLevel(old_level)
                # kfp.local indents step output by swapping builtins.print; two ParallelFor
                # threads can restore each other's copy and leave print indented for good.
                builtins.print = original_print
    seconds = time.perf_counter() - started
    new_dirs = sorted((p for p in set(root.iterdir()) - before
                       if p.is_dir() and p.name != "cache"),
                      key=lambda p: p.stat().st_mtime)
    if not new_dirs:
        raise UserError(f"the local run left no output under {root}; see {log_path}")
    result = _collect(new_dirs[-1], log_path, seconds, params, root / "cache")
    result.pipeline_run_id = run_id
    result.succeeded = succeeded and bool(result.tasks) and \
        all(v in ("SUCCESS", "CACHED") for v in result.tasks.values())
    return result


def _parameters(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "executor_output.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("parameterValues") or {})


def _collect(run_dir: Path, log_path: Path, seconds: float, params: RunParams,
             cache_dir: Path) -> LocalRunResult:
    """Read the log, the run folder and the cache: task statuses, version, gate, reports.

    A cached step left nothing in this run's folder: its outputs are where the cache entry
    points (the folder of the run that computed them).
    """
    lines = _ANSI.sub("", log_path.read_text(errors="replace")).splitlines()
    error = ""
    for index, line in enumerate(lines):
        if "Traceback (most recent call last)" in line:
            # the exception line is the next one indented like "Traceback" itself
            indent = len(line) - len(line.lstrip())
            for follow in lines[index + 1:]:
                if follow.strip() and len(follow) - len(follow.lstrip()) == indent:
                    error = follow.strip()
                    break
    statuses: dict[str, str] = {}
    outputs: dict[str, dict[str, Any]] = {}  # task -> {output name: path or value}

    def add(name: str, status: str) -> str:
        key, n = name, 1
        while key in statuses:  # ParallelFor iterations share a task name
            n += 1
            key = f"{name}#{n}"
        statuses[key] = status
        return key

    for line in lines:
        done = re.search(r"Task '([^']+)' finished with status (\w+)", line)
        if done:
            key = add(done[1], done[2])
            task_dir = run_dir / done[1]
            if task_dir.is_dir():
                outputs[key] = {**{p.name: p for p in task_dir.iterdir()},
                                **_parameters(task_dir)}
        hit = re.search(r"Task (\S+) cache hit \(key=(\w+)\)", line)
        if hit:
            key = add(hit[1].strip("'"), "CACHED")
            entry = next(iter(sorted(cache_dir.glob(f"{hit[2]}*.json"))), None)
            if entry is not None:
                cached = json.loads(entry.read_text())
                outputs[key] = {name: Path(v["uri"]) if isinstance(v, dict) and "uri" in v else v
                                for name, v in cached.items()}
    result = LocalRunResult(run_dir=run_dir, log_path=log_path, seconds=seconds,
                            succeeded=False, tasks=statuses, error=error,
                            cached=[k for k, v in statuses.items() if v == "CACHED"],
                            outputs=outputs,
                            model_name=params.resolved_model_name())
    result.version = outputs.get("register", {}).get("Output")
    gate = outputs.get("gate", {})
    if "Output" in gate:
        result.promoted = bool(gate["Output"])
    for label, task, name in (("gate (markdown)", "gate", "report_md"),
                              ("gate (html)", "gate", "report_html"),
                              ("error analysis", "error-analysis", "report")):
        path = outputs.get(task, {}).get(name)
        if isinstance(path, Path) and path.is_file():
            result.reports[label] = path
    if "gate (markdown)" in result.reports:
        match = re.search(r"\*\*Reason:\*\* (.*)", result.reports["gate (markdown)"].read_text())
        result.gate_reason = match[1] if match else ""
    metrics = outputs.get("evaluate-2", {}).get("metrics")
    if isinstance(metrics, Path) and metrics.is_file():
        try:
            result.metrics = json.loads(metrics.read_text())
        except ValueError:
            result.metrics = {}
    return result
