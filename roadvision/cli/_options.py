"""Option parsing shared by the command groups."""

from __future__ import annotations

from collections.abc import Iterable

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
