"""A mutual-exclusion lock on one registered model, for the registry's read-check-write steps.

MLflow has no transactions and no compare-and-set: aliases and tags are plain upserts, so two
``promote`` calls that each read the champion, decide and write interleave freely (both say
success, the alias and the audit disagree, an audit append is lost). What every MLflow backend
does guarantee (SQLite, PostgreSQL/MySQL, and a tracking server in front of either) is that a
registered model's name is unique: ``create_registered_model`` of a taken name fails with
``RESOURCE_ALREADY_EXISTS``, atomically, in the store's own unique index. So the lock is a
registered model named ``<name>.roadvision-lock``: created on entry, deleted on exit. A tag with a
random token is written in the same insert and re-read after it and before the delete, so that a
holder never deletes a lock it does not hold.

A holder that dies (kill -9, a lost pod) leaves its lock behind. A waiter that has seen the same
token for longer than ``stale_after`` seconds of its own monotonic clock (so clock skew between
hosts does not matter) breaks it. Breaking takes a second unique name,
``<name>.roadvision-lock.break-<token>``, so that of several waiters only one deletes the stale
lock, and only while it still carries the stale token: a fresh lock taken meanwhile survives.
A holder slower than ``stale_after`` would lose its lock; :meth:`RegistryLock.verify` tells it so
(the registry's alias moves take well under a second, ``stale_after`` is a minute).
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from roadvision.errors import UserError

__all__ = ["LOCK_SUFFIX", "RegistryBusy", "RegistryLock", "is_lock_name", "registry_lock"]

LOCK_SUFFIX = ".roadvision-lock"
_TOKEN_TAG = "roadvision.lock.token"
_HOLDER_TAG = "roadvision.lock.holder"
DEFAULT_TIMEOUT_S = 120.0  # how long a caller waits for a busy lock before giving up
DEFAULT_STALE_AFTER_S = 60.0  # a lock held this long with no change is taken to be abandoned


class RegistryBusy(UserError):
    """The registered model's lock stayed taken for the whole wait."""


def is_lock_name(name: str) -> bool:
    """True for the lock's own registered models (hidden from listings)."""
    return name.endswith(LOCK_SUFFIX) or f"{LOCK_SUFFIX}.break-" in name


@dataclass
class RegistryLock:
    """A held lock: its registered model name and the token that proves ownership."""

    client: object
    model_name: str
    lock_name: str
    token: str

    def verify(self) -> None:
        """Raise unless this lock is still ours (it was broken as stale, or deleted by hand)."""
        if _token_of(self.client, self.lock_name) != self.token:
            raise UserError(f"{self.model_name}: lost the registry lock while changing aliases "
                            "(held longer than the stale limit?); check `roadvision model audit "
                            f"{self.model_name}` and re-run")


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _transient(exc: Exception) -> bool:
    """Errors that mean "taken, or changing right now: try again"."""
    text = str(exc).lower()
    return _error_code(exc) in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST") or \
        "already exists" in text or "database is locked" in text or "not found" in text


def _token_of(client, lock_name: str) -> str | None:
    """The token on ``lock_name``, None when no lock is held."""
    from mlflow.exceptions import MlflowException

    try:
        # A lock model without a token (made by hand?) still gets a value, so it can go stale.
        return dict(client.get_registered_model(lock_name).tags or {}).get(_TOKEN_TAG, "-")
    except MlflowException as exc:
        if _transient(exc):
            return None
        raise


def _holder_of(client, lock_name: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(lock_name).tags or {}).get(_HOLDER_TAG, "?")
    except MlflowException:
        return "?"


def _create(client, name: str, tags: dict[str, str]) -> bool:
    """Insert ``name``; False when it is taken (the one atomic test-and-set MLflow offers)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags=tags,
                                       description="roadvision registry lock; deleted when the "
                                                   "alias change that took it is done")
        return True
    except MlflowException as exc:
        if _transient(exc):
            return False
        raise


def _delete(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if not _transient(exc):
            raise


def _break(client, lock_name: str, stale_token: str) -> None:
    """Delete ``lock_name`` if it still carries ``stale_token``; one breaker per token."""
    marker = f"{lock_name}.break-{stale_token[:16]}"
    if not _create(client, marker, {_HOLDER_TAG: _me("breaking a stale lock")}):
        return  # another waiter is breaking this very lock
    try:
        if _token_of(client, lock_name) == stale_token:
            _delete(client, lock_name)
    finally:
        _delete(client, marker)


def _me(purpose: str) -> str:
    return f"{socket.gethostname()} pid {os.getpid()} ({purpose or 'registry change'})"[:500]


@contextmanager
def registry_lock(client, model_name: str, purpose: str = "", *,
                  timeout: float = DEFAULT_TIMEOUT_S,
                  stale_after: float = DEFAULT_STALE_AFTER_S) -> Iterator[RegistryLock]:
    """Hold ``model_name``'s lock for the ``with`` block; RegistryBusy after ``timeout`` s."""
    lock_name = f"{model_name}{LOCK_SUFFIX}"
    token = secrets.token_hex(16)
    tags = {_TOKEN_TAG: token, _HOLDER_TAG: _me(purpose)}
    deadline = time.monotonic() + timeout
    seen, seen_since = None, time.monotonic()
    delay = 0.02
    while True:
        # Re-read after the write: a create that "succeeded" is ours only if our token is there.
        if _create(client, lock_name, tags) and _token_of(client, lock_name) == token:
            break
        current = _token_of(client, lock_name)
        now = time.monotonic()
        if current != seen:
            seen, seen_since = current, now
        elif current and now - seen_since > stale_after:
            _break(client, lock_name, current)
            continue
        if now > deadline:
            raise RegistryBusy(f"{model_name}: the registry is busy: "
                               f"{_holder_of(client, lock_name)} has held its lock for "
                               f"{now - seen_since:.0f}s; try again")
        time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: waiters do not retry in step
        delay = min(delay * 1.6, 0.5)
    lock = RegistryLock(client, model_name, lock_name, token)
    try:
        yield lock
    finally:
        if _token_of(client, lock_name) == token:
            _delete(client, lock_name)
