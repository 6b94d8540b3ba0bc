"""The audit log of alias changes and the champion history, kept as registered-model tags.

Each audit entry is its own tag ``roadvision.audit.<seq>`` with a sequence number taken under
the registered model's lock (:mod:`roadvision.registry.lock`), so no append overwrites another
and no clock decides the order. The tag's value is one sentence a person reads in MLflow's UI,
``2026-12-01T16:04:05+00:00 promote @champion v2 (was v1) by bob: better recall``, in a fixed
shape that :func:`audit_entries` parses back (the reason comes last and may hold anything).
``roadvision.champion_history`` is the ordered list of versions that have been champion
(``"1,3,4"``), which ``rollback`` walks back.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from .client import RegistryClient
from .versions import TAG_VALUE_LIMIT

__all__ = ["AUDIT_LOG_TAG", "AUDIT_ENTRY_PREFIX", "CHAMPION_HISTORY_TAG", "audit_entries",
           "audit_log", "append_audit", "next_seq", "last_audit", "champion_history",
           "write_champion_history", "who", "now", "format_entry", "parse_entry"]

AUDIT_ENTRY_PREFIX = "roadvision.audit."
# Stores written before per-entry audit tags keep their JSON list here; it is read, never written.
AUDIT_LOG_TAG = "roadvision.audit_log"
CHAMPION_HISTORY_TAG = "roadvision.champion_history"  # registered-model tag: "1,3,4"
_HISTORY_KEPT = 200  # champions remembered (a tag value holds 5000 characters)


def who() -> str:
    """Who changes an alias: ``ROADVISION_USER``, else the login name."""
    if os.environ.get("ROADVISION_USER"):
        return os.environ["ROADVISION_USER"]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers (random uid)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def now() -> str:
    """The time of a change, ISO 8601 in UTC."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _seq_of(key: str) -> int | None:
    rest = key[len(AUDIT_ENTRY_PREFIX):]
    return int(rest) if key.startswith(AUDIT_ENTRY_PREFIX) and rest.isdigit() else None


_FIELDS = ("seq", "at", "action", "alias", "version", "previous", "by", "reason")
_LINE = re.compile(r"(?P<at>\S+) (?P<action>\S+) @(?P<alias>\S+) (?P<version>v\S+|none) "
                   r"\(was (?P<previous>v\S+|none)\) by (?P<by>[^\[\n]*?)"
                   r"(?: \[(?P<extras>[^\]]*)\])?: (?P<reason>.*)", re.S)


def _word(value: Any) -> str:
    """A field inside the sentence: no spaces (they separate fields), no brackets."""
    return re.sub(r"[\s\[\]]+", "_", str(value)) or "_"


def _extra(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[\]\n]", " ", text).replace("; ", ", ")


def format_entry(entry: Mapping[str, Any]) -> str:
    """An audit entry as its one readable sentence (``seq`` lives in the tag's name)."""
    def v(version: Any) -> str:
        return f"v{_word(version)}" if version not in (None, "") else "none"

    # ": " ends the name in the sentence; "pipeline:<run id>" keeps its colon
    by = re.sub(r":(?=\s)|:$|[\[\]\n]", "_", str(entry.get("by") or "unknown"))
    extras = {k: val for k, val in entry.items() if k not in _FIELDS}
    bracket = (" [" + "; ".join(f"{_word(k)}={_extra(val)}" for k, val in extras.items()) + "]"
               if extras else "")
    return (f"{_word(entry.get('at') or '-')} {_word(entry.get('action') or '-')} "
            f"@{_word(entry.get('alias') or '-')} {v(entry.get('version'))} "
            f"(was {v(entry.get('previous'))}) by {by}{bracket}: {entry.get('reason') or ''}")


def parse_entry(text: str, seq: int | None = None) -> dict[str, Any]:
    """A tag value back into its entry: the sentence, or the JSON earlier stores wrote."""
    if text.startswith("{"):
        try:
            entry = json.loads(text)
            return entry if isinstance(entry, dict) else {"action": "unreadable", "raw": text[:200]}
        except ValueError:
            return {"action": "unreadable", "raw": text[:200]}
    m = _LINE.fullmatch(text)
    if m is None:
        return {"action": "unreadable", "raw": text[:200], **({"seq": seq} if seq else {})}
    entry: dict[str, Any] = {"seq": seq} if seq is not None else {}
    for key in ("at", "action", "alias", "by", "reason"):
        entry[key] = m[key]
    for key in ("version", "previous"):
        entry[key] = None if m[key] == "none" else m[key][1:]
    for item in (m["extras"] or "").split("; "):
        key, sep, value = item.partition("=")
        if sep:
            entry[key] = {"true": True, "false": False}.get(value, value)
    return entry


def audit_entries(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The audit in order: the legacy JSON list first (stores written before per-entry tags),
    then one entry per ``roadvision.audit.<seq>`` tag by sequence number."""
    try:
        legacy = json.loads(tags.get(AUDIT_LOG_TAG, "[]"))
    except ValueError:
        legacy = []
    numbered = []
    for key, value in tags.items():
        seq = _seq_of(key)
        if seq is None:
            continue
        numbered.append((seq, parse_entry(value, seq)))
    return [e for e in legacy if isinstance(e, dict)] + [e for _, e in sorted(numbered)]


def next_seq(tags: Mapping[str, str]) -> int:
    """The sequence number the next audit entry takes."""
    return max((s for s in map(_seq_of, tags) if s is not None), default=0) + 1


def append_audit(client: RegistryClient, model_name: str, entry: dict[str, Any],
                 tags: Mapping[str, str] | None = None) -> int:
    """Write ``entry`` as a new audit tag (call under the lock); returns its sequence number."""
    tags = client.registered_tags(model_name) if tags is None else tags
    seq = next_seq(tags)
    text = format_entry(entry)
    if len(text) > TAG_VALUE_LIMIT:  # long reasons are cut, the entry itself is always kept
        over = len(text) - TAG_VALUE_LIMIT + 20
        entry = {**entry, "reason": str(entry.get("reason", ""))[:-over] + " [cut]"}
        text = format_entry(entry)[:TAG_VALUE_LIMIT]
    client.mlflow.set_registered_model_tag(model_name, f"{AUDIT_ENTRY_PREFIX}{seq:06d}", text)
    return seq


def audit_log(client: RegistryClient, model_name: str) -> list[dict[str, Any]]:
    """The alias changes recorded on ``model_name`` (oldest first), every one of them."""
    return audit_entries(client.registered_tags(model_name))


def last_audit(entries: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    """The newest entry about ``alias``, None when it has none."""
    return next((e for e in reversed(entries) if e.get("alias") == alias), None)


def champion_history(client: RegistryClient, model_name: str) -> list[str]:
    """The versions that have been champion of ``model_name``, oldest first."""
    text = client.registered_tags(model_name).get(CHAMPION_HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def write_champion_history(client: RegistryClient, model_name: str, history: list[str]) -> None:
    """Replace the champion history (call under the lock), keeping the newest entries."""
    client.mlflow.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG,
                                           ",".join(history[-_HISTORY_KEPT:]))
