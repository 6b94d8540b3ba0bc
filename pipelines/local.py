"""Run the compiled training pipeline on this machine with ``kfp.local`` (no cluster).

The pipeline is compiled to YAML first and that YAML is what runs: exactly the DAG a cluster
would get (ParallelFor, Collected, If included). ``SubprocessRunner(use_venv=False)`` runs each
step as a subprocess of this interpreter, where roadvision is installed; the components install
nothing (see ``components/_base.py``), so no step touches a package index. kfp.local ignores
the Kubernetes settings (GPU, node selector, toleration, Secrets, retries) with a warning.

Outputs go under ``$ROADVISION_HOME/pipeline_runs/<run>/<task>/`` (``roadvision_home()``);
kfp.local's own chatter (the executor input of every step) goes to ``pipeline.log`` in the run
folder, and one line per step is echoed to the console.

What the run produced is read from the steps' result JSON (each step's ``result`` output, see
``components/_base.py::step_result``), keyed by the name each step gives itself
(``evaluate-student``, ``train-member-1``), never by KFP's generated task names. The only
thing read from kfp.local's log is its report of a cache hit, because a cached step leaves
nothing in this run's folder: the hit names the cache entry, which points at the result.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from roadvision.components.run_params import RunParams
from roadvision.errors import UserError
from roadvision.pipelines.runs import finish_record, start_record
from roadvision.progress import PREFIX, STATE, Heartbeat

__all__ = ["LocalRunResult", "run_local", "compile_to"]

_TASK_LINE = re.compile(r"(Executing task|Task .* finished with status|Task .* cache hit|"
                        r"Pipeline .* finished|^\s*" + re.escape(PREFIX) + ")")
#: The step names in kfp.local's start and end lines, for "still running: ..." heartbeats.
_STARTED = re.compile(r"Executing task '([^']+)'")
_ENDED = re.compile(r"Task '([^']+)' (?:finished|cache hit)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


#: kfp.local's report of a cache hit: the task's KFP name and the start of the cache key.
_CACHE_HIT = re.compile(r"Task (\S+) cache hit \(key=(\w+)\)")
#: The output every step writes its result JSON into (``components/_base.py::step_result``).
RESULT_OUTPUT = "result"


@dataclass
class LocalRunResult:
    """What a local run produced (paths are on this machine)."""

    run_dir: Path
    log_path: Path
    seconds: float
    succeeded: bool
    #: every step's result JSON, by the step's own name ("ingest", "train-member-0", ...)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)  # own names of steps answered from cache
    model_name: str = ""
    version: str | None = None
    promoted: bool | None = None
    gate_reason: str = ""
    error: str = ""  # the first failed step's name and error
    pipeline_run_id: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # the registered model's test metrics
    reports: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"pipeline {'succeeded' if self.succeeded else 'FAILED'} in "
                 f"{self.seconds:.0f} s ({len(self.steps)} steps, {len(self.cached)} cached); "
                 f"outputs in {self.run_dir}"]
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
        self.running: dict[str, int] = {}  # step -> how many run now (ParallelFor members)
        self.heartbeat = Heartbeat(lambda: "pipeline still running", out=console) \
            if console is not None else None
        STATE.set_status("pipeline still running")

    def _follow(self, line: str) -> None:
        """Keep ``STATE.status`` saying which steps run now (what a heartbeat prints)."""
        if started := _STARTED.search(line):
            self.running[started[1]] = self.running.get(started[1], 0) + 1
        elif ended := _ENDED.search(line):
            if self.running.get(ended[1], 0) > 1:
                self.running[ended[1]] -= 1
            else:
                self.running.pop(ended[1], None)
        else:
            return
        STATE.set_status("pipeline still running: " + ", ".join(
            f"{name} x{n}" if n > 1 else name for name, n in self.running.items())
            if self.running else "pipeline still running")

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.console is not None:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                if _TASK_LINE.search(line):
                    clean = _ANSI.sub("", line).strip()
                    self.console.write(clean + "\n")
                    self.console.flush()
                    self._follow(clean)
                    STATE.touch()
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
    # Steps print progress lines (``roadvision.progress``), echoed to the console; their
    # progress bars draw only on a terminal, which a step's output never is.
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
        from roadvision.pipelines.cluster import ClusterSettings

        pipeline_file = compile_to(root / f"pipeline-{stamp}-{os.getpid()}.yaml",
                                   ClusterSettings(io_retries=0))
    pipeline_file = Path(pipeline_file)
    if not pipeline_file.is_file():
        raise UserError(f"pipeline file {pipeline_file} does not exist")

    # Steps find their MLflow parent run through this (see components/_base.py).
    run_id = uuid.uuid4().hex[:16]
    os.environ["ROADVISION_PIPELINE_RUN_ID"] = run_id
    # The parent run is made here, before any step, so that it carries the run's parameters.
    from roadvision.components._base import open_pipeline_run

    open_pipeline_run(run_id, {k: v for k, v in params.to_dict().items()
                               if k != "mlflow_tracking_uri"},  # the store, maybe credentials
                      experiment=params.experiment,
                      tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    record = start_record(root, run_id, params, log_path)  # `roadvision pipeline runs`
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
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee), \
                (tee.heartbeat or contextlib.nullcontext()):
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
    result.succeeded = succeeded and result.succeeded
    STATE.set_status("")
    finish_record(root, record, result)
    return result


def _results_in(run_dir: Path) -> Iterator[Path]:
    """The result files of the steps that ran in ``run_dir`` (loop iterations and conditions
    nest task folders one level deeper)."""
    for path in sorted(run_dir.rglob(RESULT_OUTPUT)):
        if path.is_file():
            yield path


def _cached_results(log_path: Path, cache_dir: Path) -> Iterator[Path]:
    """The result files of the steps kfp.local answered from its cache in this run."""
    text = _ANSI.sub("", log_path.read_text(errors="replace"))
    for key in dict.fromkeys(m[2] for m in _CACHE_HIT.finditer(text)):
        entry = next(iter(sorted(cache_dir.glob(f"{key}*.json"))), None)
        if entry is None:
            continue
        output = json.loads(entry.read_text()).get(RESULT_OUTPUT)
        if isinstance(output, dict) and output.get("uri"):
            yield Path(output["uri"])


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "task" in result else None


def _collect(run_dir: Path, log_path: Path, seconds: float, params: RunParams,
             cache_dir: Path) -> LocalRunResult:
    """Every step's result JSON (this run's and the cached ones), and what they say: the
    registered version, the gate's decision and reason, the student's metrics, the reports."""
    result = LocalRunResult(run_dir=run_dir, log_path=log_path, seconds=seconds,
                            succeeded=False, model_name=params.resolved_model_name())
    for path, cached in [*((p, False) for p in _results_in(run_dir)),
                         *((p, True) for p in _cached_results(log_path, cache_dir))]:
        step = _read_result(path)
        if step is None:
            continue
        result.steps[step["task"]] = step
        if cached:
            result.cached.append(step["task"])
    failed = [s for s in result.steps.values() if s.get("status") != "succeeded"]
    if failed:
        result.error = f"{failed[0]['task']}: {failed[0].get('error', '')}"
    steps = result.steps
    result.version = steps.get("register", {}).get("version")
    gate = steps.get("gate", {})
    if "passed" in gate:
        result.promoted = bool(gate["passed"]) and \
            steps.get("promote", {}).get("status") == "succeeded"
        result.gate_reason = gate.get("reason", "")
    # Done = no step failed and the run got to its end: the gate decided, and a passed gate
    # promoted (a step killed before it could write its result leaves the DAG short).
    result.succeeded = not failed and result.promoted is not None and \
        (result.promoted or not gate["passed"])
    result.metrics = steps.get("evaluate-student", {}).get("metrics", {})
    for label, task, name in (("gate (markdown)", "gate", "report_md"),
                              ("gate (html)", "gate", "report_html"),
                              ("error analysis", "error_analysis", "report")):
        uri = steps.get(task, {}).get("artifacts", {}).get(name)
        if uri and Path(uri).is_file():
            result.reports[label] = Path(uri)
    return result
