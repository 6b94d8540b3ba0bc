"""``roadvision model ...``: list, show, promote and roll back registered models (MLflow)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Registered models: list, show, promote, rollback (MLflow registry).",
                  no_args_is_help=True)
console = Console()


def register(root: typer.Typer) -> None:
    """Add the ``model`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="model")


@app.callback()
def _store(tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
        help="MLflow store (default: .roadvision/mlflow.db)")) -> None:
    from roadvision import registry

    registry.check_tracking(tracking_uri, parameter="--tracking-uri")
    registry.configure(tracking_uri)
    if tracking_uri:
        import os

        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


@app.command("list")
def list_() -> None:
    """Registered models with their champion and challenger."""
    from roadvision import registry

    models = registry.list_models()
    if not models:
        console.print(f"no registered models in {registry.tracking_uri()}")
        return
    table = Table()
    for column in ("model", "versions", "latest", "champion", "challenger", "other aliases"):
        table.add_column(column)
    for m in models:
        aliases = {k: str(v) for k, v in m["aliases"].items()}
        other = ", ".join(f"@{k}=v{v}" for k, v in sorted(aliases.items())
                          if k not in (registry.CHAMPION, registry.CHALLENGER))
        table.add_row(m["name"], str(m["num_versions"]), m["latest_version"],
                      aliases.get(registry.CHAMPION, "-"), aliases.get(registry.CHALLENGER, "-"),
                      other or "-")
    console.print(table)


@app.command("show")
def show(model: str = typer.Argument(..., help="NAME, NAME@alias or NAME/version"),
         as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """One version: aliases, metrics, gate decision, lineage and audit tags."""
    from roadvision import registry

    info = registry.get_version(model)
    if as_json:
        console.print_json(json.dumps({"name": info.name, "version": info.version,
                                       "aliases": info.aliases, "tags": info.tags,
                                       "run_id": info.run_id, "created_at": info.created_at}))
        return
    aliases = ", ".join(f"@{a}" for a in info.aliases) or "none"
    console.print(f"[bold]{info.name}[/] version {info.version}  aliases: {aliases}")
    console.print(f"created {info.created_at}  run {info.run_id}  uri {info.uri}")
    table = Table(title="tags")
    table.add_column("tag")
    table.add_column("value", overflow="fold")
    for key in sorted(info.tags):
        table.add_row(key, info.tags[key])
    console.print(table)


@app.command("promote")
def promote(name: str = typer.Argument(..., help="registered model name"),
            version: str = typer.Argument(..., help="version to make @champion"),
            reason: str = typer.Option("", help="why (kept in the audit tags)")) -> None:
    """Make VERSION the champion by hand (audit tags record who, when, why)."""
    from roadvision import registry

    previous = registry.champion(name)
    info = registry.promote(name, version, reason=reason or "manual promotion")
    was = f" (was v{previous.version})" if previous else ""
    console.print(f"[green]{name} v{info.version} is now @champion[/]{was}")


@app.command("rollback")
def rollback(name: str = typer.Argument(..., help="registered model name"),
             reason: str = typer.Option("", help="why (kept in the audit tags)")) -> None:
    """Point @champion back at the previous champion."""
    from roadvision import registry

    current = registry.champion(name)
    info = registry.rollback(name, reason=reason)
    console.print(f"[yellow]{name} @champion rolled back from v{current.version} to "
                  f"v{info.version}[/]")
