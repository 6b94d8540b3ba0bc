"""Alias moves (set, promote, roll back), each one under the registered model's lock.

Every move runs under the lock (:mod:`roadvision.registry.lock`): read the current alias and
audit, write the alias, the version tags and ONE new audit entry, re-read and verify, release.
So the alias always equals its last audit entry, and no append overwrites another. The version
moved to carries one ``roadvision.<alias>`` tag holding the audit sentence (who, when, why,
from which version; :func:`alias_note` reads it), the one it replaced a ``replaced_by`` tag;
champion moves extend the champion history that ``rollback`` walks back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from roadvision.errors import UserError

from .audit import (
    append_audit,
    audit_entries,
    champion_history,
    format_entry,
    last_audit,
    next_seq,
    now,
    parse_entry,
    who,
    write_champion_history,
)
from .client import RegistryClient
from .lock import RegistryLock, registry_lock
from .names import CHAMPION, parse_version
from .versions import VersionInfo, aliases_of, get_version, require_version, tag_version

__all__ = ["set_alias", "promote", "rollback", "alias_tag", "alias_note"]


def _move_alias(client: RegistryClient, lock: RegistryLock, model_name: str, alias: str,
                version: str, reason: str, *, action: str, by: str | None,
                extra: Mapping[str, Any] | None = None) -> tuple[str | None, int]:
    """Point ``alias`` at ``version`` and audit it; call under ``lock``. Returns
    ``(previous version, audit seq)``."""
    rm = client.mlflow.get_registered_model(model_name)
    tags = dict(rm.tags or {})
    previous = aliases_of(rm).get(alias)
    last = last_audit(audit_entries(tags), alias)
    if last is not None and last.get("version") != previous or last is None and previous:
        # The alias moved without an audit entry (an interrupted call, or a change made in
        # MLflow's UI): say so in the audit before this change, so the log stays true.
        append_audit(client, model_name, {
            "action": "observed", "alias": alias, "version": previous,
            "previous": last.get("version") if last else None, "by": "unknown", "at": now(),
            "reason": "alias found here with no audit entry (an interrupted or outside change)"},
            tags)
        tags = client.registered_tags(model_name)
    by, when = by or who(), now()
    lock.verify()
    client.mlflow.set_registered_model_alias(model_name, alias, version)
    entry = {"action": action, "alias": alias, "version": version, "previous": previous,
             "by": by, "at": when, "reason": reason or "(no reason given)", **(extra or {})}
    seq = append_audit(client, model_name, entry, tags)
    # One tag per alias on a version (MLflow's version page lists every tag): the audit sentence.
    tag_version(client, model_name, version, {alias_tag(alias): format_entry(entry)})
    if previous is not None and previous != version:
        tag_version(client, model_name, previous,
                    {f"{alias_tag(alias)}.replaced_by": f"v{version} at {when}"})
    return previous, seq


def alias_tag(alias: str) -> str:
    """The version tag that says who moved ``alias`` to that version, when, why and from where."""
    return f"roadvision.{alias}"


def alias_note(tags: Mapping[str, str], alias: str) -> dict[str, Any] | None:
    """The move of ``alias`` onto a version, from the version's tags (``at``, ``by``,
    ``reason``, ``previous`` ...), or None when ``alias`` was never moved there by roadvision."""
    text = tags.get(alias_tag(alias))
    return parse_entry(text) if text else None


def _verify(client: RegistryClient, lock: RegistryLock, model_name: str, alias: str,
            version: str, seq: int) -> None:
    """Re-read: the alias is ``version`` and the newest audit entry is ours; else fail loudly."""
    lock.verify()
    rm = client.mlflow.get_registered_model(model_name)
    current = aliases_of(rm).get(alias)
    if current != version or next_seq(dict(rm.tags or {})) != seq + 1:
        raise UserError(f"{model_name}: @{alias} is v{current} after setting it to v{version} (a "
                        "writer outside roadvision's lock?); see `roadvision model audit "
                        f"{model_name}` and re-run")


def _push_history(client: RegistryClient, model_name: str, version: str) -> None:
    history = champion_history(client, model_name)
    if not history or history[-1] != version:
        history.append(version)
    write_champion_history(client, model_name, history)


def _locked(client: RegistryClient, model_name: str, purpose: str):
    return registry_lock(client.mlflow, model_name, purpose)


def set_alias(client: RegistryClient, model_name: str, alias: str, version: str | int,
              reason: str = "", *, action: str = "set_alias",
              by: str | None = None) -> VersionInfo:
    """Point ``alias`` at ``version``, leaving who/when/why on the version and the audit log."""
    version = parse_version(version)
    require_version(client, model_name, version)
    with _locked(client, model_name, f"{action} @{alias} -> v{version}") as lock:
        _, seq = _move_alias(client, lock, model_name, alias, version, reason, action=action,
                             by=by)
        if alias == CHAMPION:
            _push_history(client, model_name, version)
        _verify(client, lock, model_name, alias, version, seq)
    return get_version(client, f"models:/{model_name}/{version}")


def promote(client: RegistryClient, model_name: str, version: str | int, reason: str = "", *,
            by: str | None = None, force: bool = False) -> VersionInfo:
    """Make ``version`` the ``champion`` (manual promotion or the pipeline's promote step).

    A version the gate refused (``gate.decision = refuse`` on the version) is promoted only with
    ``force``; the audit entry then records that it was forced and the gate's reason.
    """
    version = parse_version(version)
    require_version(client, model_name, version)
    with _locked(client, model_name, f"promote v{version}") as lock:
        info = require_version(client, model_name, version)  # the gate may have tagged it since
        extra: dict[str, Any] = {}
        if info.tags.get("gate.decision") == "refuse":
            gate_reason = info.tags.get("gate.reason", "(no reason recorded)")
            if not force:
                raise UserError(f"{model_name} v{version}: the gate refused this version "
                                f"({gate_reason}); promote it anyway with --force and a "
                                "--reason")
            extra = {"forced": True, "gate_reason": gate_reason[:1000]}
            reason = f"forced over the gate's refusal: {reason or '(no reason given)'}"
        _, seq = _move_alias(client, lock, model_name, CHAMPION, version,
                             reason or "promoted", action="promote", by=by, extra=extra)
        _push_history(client, model_name, version)
        _verify(client, lock, model_name, CHAMPION, version, seq)
    return get_version(client, f"models:/{model_name}/{version}")


def rollback(client: RegistryClient, model_name: str, reason: str = "", *,
             by: str | None = None) -> VersionInfo:
    """Point ``champion`` back at the champion before the current one.

    The history is the ordered list of versions that have been champion; rollback drops the
    current one from it, so that a second rollback goes one further back. Read and written
    under the lock, so two rollbacks at once go back two steps, never one step twice.
    """
    with _locked(client, model_name, "rollback") as lock:
        current = aliases_of(client.mlflow.get_registered_model(model_name)).get(CHAMPION)
        if current is None:
            raise UserError(f"{model_name}: has no @champion to roll back from")
        history = champion_history(client, model_name)
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise UserError(f"{model_name}: no previous champion to roll back to "
                            f"(v{current} is the first)")
        target = history[-1]
        _, seq = _move_alias(client, lock, model_name, CHAMPION, target,
                             f"rollback from v{current}" + (f": {reason}" if reason else ""),
                             action="rollback", by=by)
        write_champion_history(client, model_name, history)
        tag_version(client, model_name, current, {
            "roadvision.rolled_back": f"{now()} by {by or who()}: {reason or '(no reason given)'}"})
        _verify(client, lock, model_name, CHAMPION, target, seq)
    return get_version(client, f"models:/{model_name}/{target}")
