"""One JSON line per HTTP request, on its own logger (``roadvision.audit``): the server's
only per-request log line (uvicorn's access line and KServe's timing lines are off).

An inference request's line (``"event": "inference"``) says who (key id, never the key; the
client address when keys are off), what (route, model, version, protocol, instance count,
TTA), how it went (status, error code, latency, cache outcome) and nothing about the content:
no image bytes, no metadata values. Every other request (health, metadata, /metrics, /docs)
gets an ``"event": "http"`` line with the same fields where they apply. Operators ship stdout
to their log store and join on ``request_id`` (the ``x-request-id`` header when the client or
a proxy sets one).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import orjson

log = logging.getLogger("roadvision.audit")


def configure(stream=None) -> None:
    """Send audit lines, bare JSON, to stdout (or ``stream``); idempotent."""
    if any(getattr(h, "_roadvision_audit", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._roadvision_audit = True  # noqa: SLF001 - marker for idempotence
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@dataclass
class AuditRecord:
    request_id: str
    key_id: str
    model: str
    protocol: str
    version: str = ""
    status: int = 0
    code: str = ""  # error code for 4xx/5xx, "" on success
    latency_ms: float = 0.0
    cache: str = "off"  # "hit", "miss", "partial" (some instances), "error", "off"
    instances: int = 0
    tta: str = ""
    method: str = ""
    route: str = ""  # the request's path


def emit(record: AuditRecord, event: str = "inference") -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    # vars(), not dataclasses.asdict: the fields are flat, and asdict deep-copies each one
    data = {"ts": round(time.time(), 3), "event": event, **vars(record)}
    data["latency_ms"] = round(record.latency_ms, 3)
    log.info(orjson.dumps(data).decode())
