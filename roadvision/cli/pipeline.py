"""``roadvision pipeline ...``: compile, run locally, submit the training pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.console import Console

from roadvision.cli._options import parse_sets
from roadvision.errors import UserError

app = typer.Typer(help="Compile, run (locally) and submit the training pipeline.",
                  no_args_is_help=True)
console = Console()


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


_SET_HELP = "pipeline parameter KEY=VALUE (repeatable), e.g. --set min_delta=0.02"
_RUN_PROFILE_HELP = "run profile (a whole run's parameters): tiny, demo or full"


@app.command("compile")
def compile_(
    out: Path = typer.Option(Path("pipelines/training_pipeline.yaml"), help="output YAML file"),
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
    from roadvision.pipelines.compile import compile_pipeline

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
    path = compile_pipeline(out, settings)
    console.print(f"[green]wrote[/] {path}")


@app.command("run")
def run(
    local: bool = typer.Option(False, "--local", help="run on this machine with kfp.local"),
    run_profile: str = typer.Option("demo", help=_RUN_PROFILE_HELP),
    task: str = typer.Option("roadwork", help="lanes or roadwork"),
    data_uri: str | None = typer.Option(None, help="data set folder, s3:// prefix or synth://"),
    epochs: int | None = typer.Option(None, help="training epochs"),
    members: int | None = typer.Option(None, help="ensemble size"),
    model_name: str | None = typer.Option(None, help="registered model name"),
    mlflow_tracking_uri: str | None = typer.Option(None, help="MLflow store (default local)"),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    pipeline_file: Path | None = typer.Option(None, help="compiled YAML to run (default: "
                                              "compile the current code)"),
) -> None:
    """Run the whole pipeline locally (same DAG, subprocesses, SQLite MLflow)."""
    from roadvision.pipelines.local import run_local

    if not local:
        raise UserError("pipeline run: only --local is supported here; use `roadvision pipeline "
                        "submit --host URL` for a cluster")
    params = build_params(run_profile, task, sets, data_uri=data_uri, epochs=epochs,
                          members=members, model_name=model_name,
                          mlflow_tracking_uri=mlflow_tracking_uri)
    result = run_local(params, pipeline_file=pipeline_file)
    typer.echo(result.summary())  # plain: long paths must not be wrapped
    if not result.succeeded:
        raise typer.Exit(1)


@app.command("submit")
def submit(
    host: str = typer.Option(..., help="KFP API URL, e.g. http://localhost:8888"),
    experiment: str = typer.Option("roadvision", help="KFP experiment"),
    run_profile: str = typer.Option("full", help=_RUN_PROFILE_HELP),
    task: str = typer.Option("roadwork", help="lanes or roadwork"),
    data_uri: str | None = typer.Option(None, help="s3:// prefix or synth:// (cluster paths)"),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    pipeline_file: Path | None = typer.Option(None, help="compiled YAML (default: committed)"),
    run_name: str | None = typer.Option(None, help="run name in the KFP UI"),
    namespace: str | None = typer.Option(None, help="Kubeflow namespace (multi-user)"),
) -> None:
    """Submit a run to a Kubeflow Pipelines cluster."""
    from roadvision.pipelines.submit import submit as submit_run

    params = build_params(run_profile, task, sets, data_uri=data_uri)
    run_id = submit_run(params, host=host, experiment=experiment, pipeline_file=pipeline_file,
                        run_name=run_name, namespace=namespace)
    console.print(f"[green]submitted[/] run {run_id} to {host}")


@app.command("params")
def params(run_profile: str = typer.Option("full", help=_RUN_PROFILE_HELP),
           task: str = typer.Option("roadwork", help="lanes or roadwork")) -> None:
    """Print a run profile's pipeline parameters."""
    for key, value in build_params(run_profile, task, None).to_dict().items():
        console.print(f"{key} = {value!r}")
