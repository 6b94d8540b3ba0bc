"""``roadvision pipeline ...``: compile, run locally, submit or schedule the training pipeline."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

import typer

from roadvision.cli._options import make_console, parse_sets
from roadvision.components.run_params import TASKS
from roadvision.errors import UserError
from roadvision.pipelines.run_profiles import RUN_PROFILES

# Choices, so that a bad value fails at parsing with the valid ones named (`--task cars`).
Task = Literal[TASKS]
RunProfile = Literal[tuple(RUN_PROFILES)]

app = typer.Typer(help="Compile, run (locally) and submit the training pipeline.",
                  no_args_is_help=True)
console = make_console()


def register(root: typer.Typer) -> None:
    """Add the ``pipeline`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="pipeline")


def _coerce(name: str, text: str, kind: type) -> object:
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise UserError(f"{name}: {text!r} is not a{'n integer' if kind is int else ' number'}") \
            from None
    return text


def build_params(run_profile: str, task: str, sets: list[str] | None, **shortcuts: object):
    """``RunParams`` from a run profile, ``--set key=value`` pairs and the shortcut options."""
    from roadvision.components.run_params import RunParams
    from roadvision.pipelines.run_profiles import from_run_profile

    kinds = {f.name: type(f.default) for f in dataclasses.fields(RunParams)}
    values: dict[str, object] = {k: v for k, v in shortcuts.items() if v is not None}
    for key, text in parse_sets(sets, kinds, "pipeline parameter").items():
        values[key] = _coerce(key, text, kinds[key])
    return from_run_profile(run_profile, task=task, **values)


def checked_params(run_profile: str, task: str, sets: list[str] | None, **shortcuts: object):
    """:func:`build_params`, every parameter validated (not the data folder or the store, which
    the run itself checks where it runs)."""
    return build_params(run_profile, task, sets, **shortcuts).validate(check_data=False,
                                                                       check_mlflow=False)


_COMPILE_OUT = Path("pipelines/training_pipeline.yaml")
_SET_HELP = "pipeline parameter KEY=VALUE (repeatable), e.g. --set min_delta=0.02"
_RUN_PROFILE_HELP = "run profile (a whole run's parameters; see `roadvision pipeline params`)"
_TASK_HELP = "what the models learn: lane segmentation or roadwork classification"


_SWEEP_OUT = Path("pipelines/sweep_pipeline.yaml")


@app.command("compile")
def compile_(
    out: Path = typer.Option(_COMPILE_OUT, help="output YAML file (the default is the committed "
                             "file of a source checkout, run from its root; with --pipeline "
                             f"sweep: {_SWEEP_OUT})"),
    pipeline: Literal["training", "sweep"] = typer.Option(
        "training", help="training, or sweep (Optuna trials in a ParallelFor)"),
    image: str | None = typer.Option(None, help="component image (Dockerfile.train build)"),
    gpu_type: str | None = typer.Option(None, help="accelerator resource, e.g. nvidia.com/gpu"),
    gpu_count: int | None = typer.Option(None, min=0, help="GPUs per training pod"),
    gpu_node_selector: str | None = typer.Option(None, help="key=value[,key=value] of GPU nodes"),
    gpu_toleration: str | None = typer.Option(
        None, help="toleration key=..,operator=..,value=..,effect=.. for the GPU taint"),
    s3_secret: str | None = typer.Option(None, help="Secret with AWS_ACCESS_KEY_ID/..SECRET.."),
    mlflow_secret: str | None = typer.Option(None, help="Secret with MLFLOW_TRACKING_USERNAME/.."),
    retries: int | None = typer.Option(None, min=0, help="retries of I/O steps"),
) -> None:
    """Compile the pipeline to YAML (upload it in the KFP UI, or commit it)."""
    from roadvision.pipelines.cluster import ClusterSettings, parse_pairs, parse_toleration
    from roadvision.pipelines.compile import compile_pipeline, compile_sweep

    if pipeline == "sweep" and out == _COMPILE_OUT:
        out = _SWEEP_OUT
    if out in (_COMPILE_OUT, _SWEEP_OUT) and not out.parent.is_dir():
        # Outside a checkout the default would plant a pipelines/ folder in the working directory.
        raise UserError(f"--out: no {out.parent}/ folder here (the default {out} is a source "
                        "checkout's committed file); pass --out FILE")
    settings = ClusterSettings.from_env()
    for name, value in (("image", image), ("accelerator_type", gpu_type),
                        ("accelerator_limit", gpu_count), ("s3_secret", s3_secret),
                        ("mlflow_secret", mlflow_secret), ("io_retries", retries)):
        if value is not None:
            setattr(settings, name, value)
    if gpu_node_selector is not None:
        settings.gpu_node_selector = parse_pairs(gpu_node_selector)
    if gpu_toleration is not None:
        settings.gpu_toleration = parse_toleration(gpu_toleration)
    path = (compile_sweep if pipeline == "sweep" else compile_pipeline)(out, settings)
    console.print(f"[green]wrote[/] {path}")


@app.command("run")
def run(
    local: bool = typer.Option(False, "--local", help="run on this machine with kfp.local"),
    run_profile: RunProfile = typer.Option("demo", help=_RUN_PROFILE_HELP),
    task: Task = typer.Option("roadwork", help=_TASK_HELP),
    data_uri: str | None = typer.Option(None, help="data set folder, s3:// prefix or synth://"),
    epochs: int | None = typer.Option(None, help="training epochs"),
    members: int | None = typer.Option(None, help="ensemble size"),
    model_name: str | None = typer.Option(None, help="registered model name"),
    mlflow_tracking_uri: str | None = typer.Option(
        None, "--mlflow-tracking-uri", "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else the roadvision home's)"),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    pipeline_file: Path | None = typer.Option(None, help="compiled YAML to run (default: "
                                              "compile the current code)"),
) -> None:
    """Run the whole pipeline locally (same DAG, subprocesses, SQLite MLflow)."""
    from roadvision.pipelines.local import run_local
    from roadvision.progress import Heartbeat

    if not local:
        raise UserError("pipeline run: only --local is supported here; use `roadvision pipeline "
                        "submit --host URL` for a cluster")
    params = build_params(run_profile, task, sets, data_uri=data_uri, epochs=epochs,
                          members=members, model_name=model_name,
                          mlflow_tracking_uri=mlflow_tracking_uri)
    # as in the demo: the store is opened (or created) and the DAG compiled before a step prints
    with Heartbeat(lambda: "preparing the pipeline run (MLflow store, compile)", out=sys.stdout):
        result = run_local(params, pipeline_file=pipeline_file)
    typer.echo(result.summary())  # plain: long paths must not be wrapped
    if not result.succeeded:
        raise typer.Exit(1)


@app.command("submit")
def submit(
    host: str = typer.Option(..., help="KFP API URL, e.g. http://localhost:8888"),
    experiment: str = typer.Option("roadvision", help="KFP experiment"),
    run_profile: RunProfile = typer.Option("full", help=_RUN_PROFILE_HELP),
    task: Task = typer.Option("roadwork", help=_TASK_HELP),
    data_uri: str | None = typer.Option(None, help="s3:// prefix or synth:// (cluster paths)"),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    pipeline_file: Path | None = typer.Option(None, help="compiled YAML (default: committed)"),
    run_name: str | None = typer.Option(None, help="run name in the KFP UI"),
    namespace: str | None = typer.Option(None, help="Kubeflow namespace (multi-user)"),
) -> None:
    """Submit a run to a Kubeflow Pipelines cluster."""
    from roadvision.pipelines.submit import submit as submit_run

    params = build_params(run_profile, task, sets, data_uri=data_uri)  # submit validates
    run_id = submit_run(params, host=host, experiment=experiment, pipeline_file=pipeline_file,
                        run_name=run_name, namespace=namespace)
    console.print(f"[green]submitted[/] run {run_id} to {host}")


@app.command("schedule")
def schedule(
    cron: str = typer.Option(..., help="when: standard cron, e.g. \"0 3 * * 1\" (Mondays 03:00), "
                                       "or KFP's six fields (seconds first)"),
    kfp_host: str | None = typer.Option(None, "--kfp-host", "--host",
                                        help="KFP API URL, e.g. http://localhost:8888"),
    experiment: str = typer.Option("roadvision", help="KFP experiment"),
    run_profile: RunProfile = typer.Option("full", help=_RUN_PROFILE_HELP),
    task: Task = typer.Option("roadwork", help=_TASK_HELP),
    data_uri: str | None = typer.Option(None, help="s3:// prefix or synth:// (cluster paths)"),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    pipeline_file: Path | None = typer.Option(None, help="compiled YAML (default: committed)"),
    name: str = typer.Option("roadvision-retrain", help="recurring run name in the KFP UI"),
    namespace: str | None = typer.Option(None, help="Kubeflow namespace (multi-user)"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="check everything and print the recurring run; send nothing"),
) -> None:
    """Retrain on a schedule: a KFP recurring run of the training pipeline."""
    from roadvision.pipelines.submit import recurring_run
    from roadvision.pipelines.submit import schedule as create_schedule

    if not kfp_host and not dry_run:
        raise UserError("pipeline schedule: pass --kfp-host URL (or --dry-run to check only)")
    params = build_params(run_profile, task, sets, data_uri=data_uri)
    job = recurring_run(params, cron, job_name=name, experiment=experiment,
                        pipeline_file=pipeline_file)
    typer.echo(f"recurring run {job.job_name!r}: cron {job.cron!r} (KFP fields, seconds first), "
               f"package {job.pipeline_file}, experiment {job.experiment}, at most "
               f"{job.max_concurrency} at a time, no catch-up")
    if dry_run:
        for key, value in job.arguments.items():
            typer.echo(f"  {key} = {value!r}")
        return
    job_id = create_schedule(job, host=kfp_host, namespace=namespace)
    console.print(f"[green]scheduled[/] recurring run {job_id} on {kfp_host}")


@app.command("params")
def params(run_profile: RunProfile = typer.Option("full", help=_RUN_PROFILE_HELP),
           task: Task = typer.Option("roadwork", help=_TASK_HELP),
           sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP)) -> None:
    """Print a run profile's pipeline parameters (with --set applied), every one validated."""
    for key, value in checked_params(run_profile, task, sets).to_dict().items():
        typer.echo(f"{key} = {value!r}")


@app.command("runs")
def runs(root: Path | None = typer.Option(None, help="runs folder (default: "
                                          "$ROADVISION_HOME/pipeline_runs)"),
         as_json: bool = typer.Option(False, "--json", help="JSON instead of a table")) -> None:
    """List local pipeline runs: status, start, duration, registered version, outputs."""
    import json

    from roadvision.pipelines.runs import format_table, list_runs
    from roadvision.registry import roadvision_home

    records = list_runs(root if root is not None else roadvision_home() / "pipeline_runs")
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        typer.echo(format_table(records))  # plain: long paths must not be wrapped
