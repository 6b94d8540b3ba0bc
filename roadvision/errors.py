"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class UserError(Exception):
    """Bad input from a user (a flag, a path, a parameter); the message says what and why."""


def refuse_unknown_keys(given: Iterable[str], valid: Sequence[str], what: str) -> None:
    """A UserError naming the keys of ``given`` not in ``valid``, and every valid one.

    ``what`` names the mapping in the message ("train config", "search space"): one check and
    one wording for every dataclass read from a user's dict.
    """
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise UserError(f"unknown {what} key(s) {unknown}; valid keys: {list(valid)}")
