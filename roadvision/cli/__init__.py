"""The ``roadvision`` command line: ``data``, ``train``/``calibrate``/``evaluate``/``analyze``/
``distill``, ``model``, ``pipeline`` and ``serve``.

Every command answers bad input with one readable line on stderr and a non-zero exit code;
set ``ROADVISION_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from roadvision.cli.data import app as data_app
from roadvision.data.contract import ContractError
from roadvision.errors import UserError

app = typer.Typer(
    name="roadvision",
    help="Train, register and serve road-infrastructure vision models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")

# Optional groups: each imports heavy libraries (torch, kfp, kserve) only when it is used.
for _module in ("ml", "model", "pipeline", "serve"):
    try:
        _mod = __import__(f"roadvision.cli.{_module}", fromlist=["register"])
    except ModuleNotFoundError as _exc:
        if not _exc.name or not _exc.name.startswith("roadvision.cli"):
            raise
        continue
    _mod.register(app)

EXPECTED_ERRORS = (UserError, ContractError, FileNotFoundError, NotADirectoryError, PermissionError)


def main() -> None:
    """Entry point: run the app, turning expected errors into one-line messages."""
    try:
        app()
    except EXPECTED_ERRORS as exc:
        if os.environ.get("ROADVISION_DEBUG"):
            raise
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
