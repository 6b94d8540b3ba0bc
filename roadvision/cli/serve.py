"""``roadvision serve``: run the KServe model server on one or two model bundles.

A thin face over ``python -m roadvision.serving``: it maps friendly option names onto that
entry point's flags, so both behave the same (environment variables included). Values are
checked here first, so that a bad one is reported under the name the user typed
(``--max-tta``), never under the entry point's internal flag name.
"""

from __future__ import annotations

import os

import typer

from roadvision.errors import UserError

TTA_MODES = ("none", "flip", "full")
OUTAGE_POLICIES = ("open", "closed")


def _check(port: int, max_tta: str | None, on_outage: str | None) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: a TCP port is between 1 and 65535")
    if max_tta is not None and max_tta not in TTA_MODES:
        raise UserError(f"--max-tta {max_tta!r}: expected one of {', '.join(TTA_MODES)}")
    if on_outage is not None and on_outage not in OUTAGE_POLICIES:
        raise UserError(f"--rate-limit-on-outage {on_outage!r}: expected one of "
                        f"{', '.join(OUTAGE_POLICIES)}")


def serve(
    model: list[str] = typer.Option(
        ..., "--model", help="bundle directory or models:/NAME@ALIAS; repeat for a second model "
                             "(each may be NAME=URI)"),
    model_name: list[str] = typer.Option(
        [], "--model-name", help="name in the URL for each --model, in order "
                                 "(default: the bundle's task, roadwork or lanes)"),
    port: int = typer.Option(8080, help="HTTP port (KServe REST v1 + v2 and /metrics)"),
    host: str = typer.Option("127.0.0.1", help="address to bind (0.0.0.0: every interface)"),
    redis: str | None = typer.Option(None, help="Redis URL for the cache and rate limits "
                                                "(default: $REDIS_URL; none = no cache)"),
    api_keys_file: str | None = typer.Option(None, help="file of API keys (enables auth)"),
    rate_limit_per_min: int | None = typer.Option(None, help="requests per minute per key"),
    rate_limit_on_outage: str | None = typer.Option(
        None, help="while Redis is down: open = serve unchecked (counted), closed = 503"),
    max_batch_size: int | None = typer.Option(None, help="micro-batch size (1 = off)"),
    max_batch_wait_ms: float | None = typer.Option(None, help="micro-batch wait in ms"),
    max_tta: str | None = typer.Option(None, help="costliest TTA a request may ask: none, "
                                                  "flip or full"),
    max_windows: int | None = typer.Option(
        None, help="compute budget: model inputs per request (lanes windows, roadwork views, "
                   "TTA copies included)"),
    request_timeout_s: float | None = typer.Option(None, help="per-request deadline (504)"),
    allow_model_control: bool = typer.Option(
        False, "--allow-model-control", help="enable the model load/unload routes"),
    device: str | None = typer.Option(None, help="cpu or cuda (default: auto)"),
    forward_workers: int | None = typer.Option(
        None, help="forward processes per model (default 1); 0 = a thread in the server"),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow store that models:/ URIs resolve in (default: "
                                     "$MLFLOW_TRACKING_URI, else the roadvision home's)"),
) -> None:
    """Serve model bundles over HTTP (KServe v1 and Open Inference Protocol v2)."""
    if len(model_name) > len(model):
        raise UserError(f"{len(model_name)} --model-name for {len(model)} --model")
    _check(port, max_tta, rate_limit_on_outage)
    if forward_workers is not None and forward_workers < 0:
        raise UserError(f"--forward-workers {forward_workers}: 0 (a thread) or more processes")
    argv = ["--http_port", str(port), "--host", host]
    for index, uri in enumerate(model):
        if index < len(model_name):
            uri = f"{model_name[index]}={uri}"
        argv += ["--model", uri]
    for flag, value in (("--redis", redis), ("--api_keys_file", api_keys_file),
                        ("--rate_limit_per_min", rate_limit_per_min),
                        ("--ratelimit_on_outage", rate_limit_on_outage),
                        ("--max_batch_size", max_batch_size),
                        ("--max_batch_wait_ms", max_batch_wait_ms), ("--max_tta", max_tta),
                        ("--max_windows", max_windows),
                        ("--request_timeout_s", request_timeout_s), ("--device", device),
                        ("--forward_workers", forward_workers)):
        if value is not None:
            argv += [flag, str(value)]
    if allow_model_control:
        argv.append("--allow_model_control")
    if tracking_uri:  # the entry point reads the store from the environment, as in a pod
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from roadvision.serving.__main__ import main

    main(argv)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the top-level CLI."""
    app.command("serve")(serve)
