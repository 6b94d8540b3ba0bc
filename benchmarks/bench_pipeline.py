"""Pipeline benchmark: the demo pipeline's wall time on kfp.local, and what the local runner
costs per step against calling the same step functions directly, in one run.

    python -m benchmarks.bench_pipeline [--run-profile demo] [--task roadwork] [--data-uri URI]

Both halves do the same work on the same parameters: (1) ``run_local`` (compiled YAML,
one subprocess per step, caching off), (2) the plain ``run_*`` step functions called one after
the other in this process (imports paid once, no executor, no artifact bookkeeping). The
difference per step is the runner's overhead: process start, imports (torch, timm, mlflow),
the KFP executor and the MLflow run setup. ParallelFor members run two at a time locally and
one after the other directly, so the wall-time comparison is per step, not only in total.
Everything goes to a temporary folder (own MLflow store); nothing under .roadvision is touched.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def _step_seconds(log_path: Path) -> dict[str, list[float]]:
    """Per task name, the durations (Executing -> finished) read from the local run's log."""
    started: dict[str, list[datetime]] = defaultdict(list)
    out: dict[str, list[float]] = defaultdict(list)
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    for line in log_path.read_text(errors="replace").splitlines():
        line = ansi.sub("", line)
        stamp = re.match(r"(\d\d:\d\d:\d\d\.\d{3}) - ", line)
        if not stamp:
            continue
        t = datetime.strptime(stamp[1], "%H:%M:%S.%f")
        if m := re.search(r"Executing task '([^']+)'", line):
            started[m[1]].append(t)
        elif (m := re.search(r"Task '([^']+)' finished", line)) and started[m[1]]:
            out[m[1]].append((t - started[m[1]].pop(0)).total_seconds())
    return out


def _direct(params, work: Path) -> dict[str, list[float]]:
    """The same steps as plain function calls in this process; seconds per step."""
    from roadvision.components.check_params import run_check_params
    from roadvision.components.distill import run_distill
    from roadvision.components.error_analysis import run_error_analysis
    from roadvision.components.evaluate import run_evaluate
    from roadvision.components.gate import run_gate
    from roadvision.components.gps_weighting import run_gps_weighting
    from roadvision.components.ingest import run_ingest
    from roadvision.components.promote import run_promote
    from roadvision.components.register import run_register
    from roadvision.components.split import run_split
    from roadvision.components.train import run_train
    from roadvision.components.validate import run_validate

    p = params
    run = {"experiment": p.experiment, "tracking_uri": p.mlflow_tracking_uri,
           "pipeline_run_id": "bench-direct"}
    training = {"task": p.task, "training_profile": p.training_profile, "epochs": p.epochs,
                "batch_size": p.batch_size, "max_steps_per_epoch": p.max_steps_per_epoch,
                "seed": p.seed}
    times: dict[str, list[float]] = defaultdict(list)

    def timed(_step, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        times[_step].append(time.perf_counter() - t0)
        return value

    members = timed("check-params", run_check_params, p.to_dict())
    timed("ingest", run_ingest, p.data_uri, work / "raw", task=p.task,
          s3_endpoint_url=p.s3_endpoint_url, **run)
    timed("validate", run_validate, work / "raw", work / "validate.md", **run)
    timed("split", run_split, work / "raw", work / "split", holdout_cities=p.holdout_cities,
          min_distance_m=p.min_distance_m, seed=p.seed, **run)
    data = work / "weighted"
    timed("gps-weighting", run_gps_weighting, work / "split", data,
          target_regions=p.target_regions, **run)
    teachers, headlines = [], []
    for member in members:
        out = work / f"member-{member}"
        timed("train", run_train, data, out, model_preset=p.model_preset, member=member,
              **training, **run)
        metrics = timed("evaluate", run_evaluate, out, data, work / f"member-{member}.json",
                        name="evaluate-member", tta=p.tta, **run)
        teachers.append(out)
        headlines.append(metrics.get("headline") or 0.0)
    timed("distill", run_distill, teachers, data, work / "student",
          student_preset=p.student_preset, model_preset=p.model_preset, **training, **run)
    timed("evaluate-2", run_evaluate, work / "student", data, work / "student.json",
          name="evaluate-student", tta=p.tta, **run)
    timed("error-analysis", run_error_analysis, work / "student", data, work / "report.html",
          **run)
    version = timed("register", run_register, work / "student", work / "student.json", data,
                    task=p.task, model_name=p.model_name, report_path=work / "report.html",
                    teacher_headlines=headlines, **run)["version"]
    decision = timed("gate", run_gate, work / "student.json", data, version, task=p.task,
                     model_name=p.model_name, tta=p.tta, min_delta=p.min_delta,
                     slice_tolerance=p.slice_tolerance, absolute_floor=p.absolute_floor,
                     min_slice_size=p.min_slice_size, **run)
    if decision["passed"]:
        timed("promote", run_promote, version, task=p.task, model_name=p.model_name, **run)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-profile", default="demo")
    parser.add_argument("--task", default="roadwork")
    parser.add_argument("--data-uri", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROADVISION_QUIET", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from roadvision.pipelines.local import run_local
    from roadvision.pipelines.run_profiles import from_run_profile

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp_path = Path(tmp)
        os.environ["ROADVISION_HOME"] = str(tmp_path / "home")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
        params = from_run_profile(args.run_profile, task=args.task, data_uri=args.data_uri)
        print(f"run profile {args.run_profile}: {params.data_uri}, {params.members} members, "
              f"{params.epochs} epochs, training profile {params.training_profile}; "
              f"cores: {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.1f}")

        t0 = time.perf_counter()
        result = run_local(params, root=tmp_path / "runs", cache=False, echo=False)
        local_wall = time.perf_counter() - t0
        if not result.succeeded:
            raise SystemExit(f"local run failed: {result.error} (log {result.log_path})")
        local_steps = _step_seconds(result.log_path)

        t0 = time.perf_counter()
        direct_steps = _direct(params.replace(model_name=params.resolved_model_name() + "-direct"),
                               tmp_path / "direct")
        direct_wall = time.perf_counter() - t0

    print(f"\nkfp.local pipeline wall time: {local_wall:.1f} s ({len(result.steps)} steps; "
          f"goal <= 360 s) | direct calls, sequential: {direct_wall:.1f} s")
    print(f"{'step':16} {'n':>2} {'local s':>9} {'direct s':>9} {'overhead s/step':>16}")
    total_local = total_direct = 0.0
    for name in direct_steps:
        local = local_steps.get(name, [])
        direct = direct_steps[name]
        n = min(len(local), len(direct))
        if not n:
            continue
        over = (sum(local[:n]) - sum(direct[:n])) / n
        total_local += sum(local[:n])
        total_direct += sum(direct[:n])
        print(f"{name:16} {n:>2} {sum(local[:n]):9.1f} {sum(direct[:n]):9.1f} {over:16.1f}")
    steps = sum(min(len(local_steps.get(k, [])), len(v)) for k, v in direct_steps.items())
    print(f"{'all steps':16} {steps:>2} {total_local:9.1f} {total_direct:9.1f} "
          f"{(total_local - total_direct) / max(steps, 1):16.1f}")


if __name__ == "__main__":
    main()
