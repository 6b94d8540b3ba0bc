"""The ``roadvision`` command line: ``data``, ``train``/``calibrate``/``evaluate``/``analyze``/
``distill``, ``model``, ``pipeline``, ``serve`` and ``info`` (version, home, store, device).

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
for _module in ("info", "ml", "model", "monitor", "pipeline", "predict", "imagery", "serve",
                "sweep"):
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
    import typer.rich_utils

    from roadvision.cli._options import help_width

    # Help fills the real terminal (rich alone falls back to 80 columns whenever stdout is
    # piped, and cuts option defaults with an ellipsis there).
    width = typer.rich_utils.MAX_WIDTH
    typer.rich_utils.MAX_WIDTH = width or help_width()
    try:
        sys.exit(_run())
    finally:
        typer.rich_utils.MAX_WIDTH = width


def _run() -> int:
    try:
        code = app(standalone_mode=False)  # usage errors come here, not as a boxed panel
    except typer.TyperException as exc:  # typer's (vendored) click errors: bad options
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 2  # the help is already printed
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        # typer words a bad choice "Value error, 'x' is not one of ..."; the value is enough
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        typer.secho(f"error: {message}{where}", err=True, fg=typer.colors.RED)
        return exc.exit_code
    except typer.Abort:
        typer.secho("aborted", err=True)
        return 1
    except EXPECTED_ERRORS as exc:
        if os.environ.get("ROADVISION_DEBUG"):
            raise
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0
