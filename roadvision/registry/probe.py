"""One real model-registry call against an MLflow tracking server, with a short timeout.

``/health`` is not enough: MLflow 3.17's host-header check (``mlflow server --allowed-hosts``)
exempts the health endpoints, so a server that refuses the client's ``Host`` header answers
``/health`` with 200 and every registry call with ``403 Invalid Host header``. A pod would pass
its startup check and fail at the first promotion or model download. This module asks the
registry API itself (``registered-models/search``, one result) over plain HTTP, so that a refusal
surfaces at start, as one line that says what to change; MLflow's own client would retry
unreachable servers for minutes before it gave up.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from roadvision.errors import UserError

__all__ = ["probe_registry", "INVALID_HOST"]

#: The start of MLflow's answer to a Host header outside ``--allowed-hosts``.
INVALID_HOST = "Invalid Host header"
_SEARCH = "/api/2.0/mlflow/registered-models/search?max_results=1"


def _auth_headers(env: Mapping[str, str]) -> dict[str, str]:
    """The credentials MLflow's client would send (token first, then basic auth)."""
    if env.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    if env.get("MLFLOW_TRACKING_USERNAME"):
        pair = f"{env['MLFLOW_TRACKING_USERNAME']}:{env.get('MLFLOW_TRACKING_PASSWORD', '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    return {}


def probe_registry(uri: str, *, timeout: float = 5.0, parameter: str = "mlflow_tracking_uri",
                   env: Mapping[str, str] = os.environ) -> None:
    """Search the registry of the server at ``uri`` (http/https) for one model; raise a
    ``UserError`` naming ``parameter`` and the fix when the server refuses or fails."""
    host = urllib.parse.urlparse(uri).netloc  # what urllib and MLflow's client send as Host
    request = urllib.request.Request(uri.rstrip("/") + _SEARCH, headers=_auth_headers(env))
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - http(s) only
            return
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode("utf-8", "replace")
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{parameter}: the MLflow registry at {uri} is unreachable ({reason})") \
            from None
    if status == 403 and INVALID_HOST in body:
        raise UserError(
            f"{parameter}: MLflow at {uri} refuses the Host header {host!r} (HTTP 403 "
            f"{INVALID_HOST}; its /health still answers): run the server with "
            f"`mlflow server --allowed-hosts {host}` (comma-separate it from the hosts it "
            "already allows)")
    if status in (401, 403):
        raise UserError(
            f"{parameter}: MLflow at {uri} refuses the registry call (HTTP {status}: "
            f"{body.strip()[:120]}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(or MLFLOW_TRACKING_TOKEN) from the server's credentials")
    if status == 404:
        raise UserError(f"{parameter}: {uri} has no MLflow REST API (HTTP 404 on "
                        f"{_SEARCH.split('?')[0]}); use the tracking server's root URL")
    raise UserError(f"{parameter}: MLflow at {uri} answers the registry call with HTTP "
                    f"{status}: {body.strip()[:200]}")
