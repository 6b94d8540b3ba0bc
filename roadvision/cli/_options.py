"""Option parsing shared by the command groups."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from rich.console import Console

from roadvision.errors import UserError


def parse_sets(items: Iterable[str] | None, valid: Iterable[str], what: str) -> dict[str, str]:
    """``--set KEY=VALUE`` items -> ``{key: raw text}``; keys may use ``-`` for ``_``.

    ``what`` names the keys in the error message ("pipeline parameter", "training option").
    """
    valid = set(valid)
    values: dict[str, str] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        if key not in valid:
            raise UserError(f"--set {key}: unknown {what}; valid: {sorted(valid)}")
        values[key] = text
    return values


#: The help of every ``--tracking-uri`` (root, ``model`` group, each ``model`` command, ``serve``).
TRACKING_URI_HELP = ("MLflow tracking store, e.g. http://mlflow:5000 or sqlite:///PATH "
                     "(default: $MLFLOW_TRACKING_URI, else mlflow.db in the roadvision home; "
                     "see `roadvision info`)")

#: Help width when no terminal is attached at all (CI logs, files): wide enough that option
#: defaults and paths are not cut with an ellipsis, as rich's 80-column fallback does.
NO_TERMINAL_WIDTH = 120


def help_width(env: Mapping[str, str] = os.environ) -> int:
    """Columns for help text: ``COLUMNS`` when set, else the width of whichever of stderr,
    stdout or stdin is a terminal (so ``roadvision X --help | less`` still fills the screen),
    else :data:`NO_TERMINAL_WIDTH`."""
    text = env.get("COLUMNS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    for fd in (2, 1, 0):
        try:
            return os.get_terminal_size(fd).columns
        except OSError:
            continue
    return NO_TERMINAL_WIDTH


def make_console() -> Console:
    """A command group's console. Plain lines are never broken, so a printed path stays whole
    for copy and paste; tables take the width at print time (``COLUMNS`` or the terminal)."""
    return Console(soft_wrap=True)
