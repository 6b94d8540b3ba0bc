"""``roadvision info`` and the root options (``--version``, ``--tracking-uri``): what this
install is and where its state lives.

Every command keeps its state in one per-user home (``roadvision_home()``: the registry's SQLite
store, downloaded models, local pipeline runs), the same from every working directory; ``info``
prints it, so a user can see where things went without reading the code.
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from typing import Any

import typer

from roadvision.cli._options import TRACKING_URI_HELP

__all__ = ["register", "version_text", "collect_info", "installed_extras"]

_DIST = "roadvision"


def version_text() -> str:
    """The installed distribution's version (the source tree's when it is not installed)."""
    try:
        return metadata.version(_DIST)
    except metadata.PackageNotFoundError:
        from roadvision import __version__

        return __version__


def installed_extras() -> dict[str, bool]:
    """``{extra: every one of its requirements is installed}`` from the package metadata."""
    try:
        requirements = metadata.requires(_DIST) or []
    except metadata.PackageNotFoundError:
        return {}
    needed: dict[str, list[str]] = {}
    for requirement in requirements:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra:
            name = re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0]
            needed.setdefault(extra.group(1), []).append(name)
    return {extra: all(_installed(name) for name in names) for extra, names in needed.items()}


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _device() -> dict[str, Any]:
    """The device ``auto`` picks and the precision policy a forward runs in there."""
    try:
        from roadvision.runtime.device import resolve_device
        from roadvision.runtime.precision import PrecisionPolicy
    except ModuleNotFoundError as exc:  # no torch: a pipeline-only install
        return {"device": None, "precision": f"n/a ({exc.name} is not installed)"}
    device = resolve_device("auto")
    return {"device": str(device), "precision": PrecisionPolicy.for_device(device).describe()}


def collect_info() -> dict[str, Any]:
    """Everything ``roadvision info`` prints (JSON-ready)."""
    from roadvision.registry.store import (
        artifact_root,
        models_cache,
        pipeline_runs_root,
        roadvision_home,
        tracking_uri,
    )

    uri = tracking_uri()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        source = "MLFLOW_TRACKING_URI"
    else:
        source = "the default: in the roadvision home"
    return {"version": version_text(),
            "home": str(roadvision_home()),
            "home_source": "ROADVISION_HOME" if os.environ.get("ROADVISION_HOME") else "default",
            "tracking_uri": uri, "tracking_uri_source": source,
            "artifact_root": artifact_root(uri) or "chosen by the tracking server",
            "pipeline_runs": str(pipeline_runs_root()), "model_cache": str(models_cache()),
            **_device(), "extras": installed_extras()}


def info(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Version, the roadvision home, the MLflow store in use, run folders, device, extras."""
    facts = collect_info()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    extras = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in facts["extras"].items())
    # Plain lines, not a rich table: paths must stay whole when the output is piped.
    for label, value in (
            ("version", facts["version"]),
            ("home", f"{facts['home']} ({facts['home_source']}; set ROADVISION_HOME to move)"),
            ("tracking store", f"{facts['tracking_uri']} ({facts['tracking_uri_source']})"),
            ("artifacts", facts["artifact_root"]),
            ("pipeline runs", facts["pipeline_runs"]),
            ("model cache", facts["model_cache"]),
            ("device", facts["device"] or "n/a"),
            ("precision", facts["precision"]),
            ("extras", extras or "unknown (roadvision is not installed as a package)")):
        typer.echo(f"{label + ':':16s}{value}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"roadvision {version_text()}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version,
                                 is_eager=True, help="print the version and exit"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Train, register and serve road-infrastructure vision models."""
    if tracking_uri:  # every command below reads the store from the environment
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


def register(root: typer.Typer) -> None:
    """Add the root options and ``info`` to the root app (called by ``roadvision.cli``)."""
    root.callback()(_root)
    root.command("info")(info)
