"""``roadvision serve``: run the KServe model server on one or two model bundles.

A thin face over ``python -m roadvision.serving``: it only maps friendly option names onto that
entry point's flags, so both behave the same (environment variables included).
"""

from __future__ import annotations

import typer

from roadvision.errors import UserError


def serve(
    model: list[str] = typer.Option(
        ..., "--model", help="bundle directory or models:/NAME@ALIAS; repeat for a second model "
                             "(each may be NAME=URI)"),
    model_name: list[str] = typer.Option(
        [], "--model-name", help="name in the URL for each --model, in order "
                                 "(default: the bundle's task, roadwork or lanes)"),
    port: int = typer.Option(8080, help="HTTP port (KServe REST v1 + v2 and /metrics)"),
    redis: str | None = typer.Option(None, help="Redis URL for the cache and rate limits "
                                                "(default: $REDIS_URL; none = no cache)"),
    api_keys_file: str | None = typer.Option(None, help="file of API keys (enables auth)"),
    rate_limit_per_min: int | None = typer.Option(None, help="requests per minute per key"),
    max_batch_size: int | None = typer.Option(None, help="micro-batch size (1 = off)"),
    max_batch_wait_ms: float | None = typer.Option(None, help="micro-batch wait in ms"),
    max_tta: str | None = typer.Option(None, help="costliest TTA a request may ask: none, "
                                                  "flip or full"),
    device: str | None = typer.Option(None, help="cpu or cuda (default: auto)"),
) -> None:
    """Serve model bundles over HTTP (KServe v1 and Open Inference Protocol v2)."""
    if len(model_name) > len(model):
        raise UserError(f"{len(model_name)} --model-name for {len(model)} --model")
    argv = ["--http_port", str(port)]
    for index, uri in enumerate(model):
        if index < len(model_name):
            uri = f"{model_name[index]}={uri}"
        argv += ["--model", uri]
    for flag, value in (("--redis", redis), ("--api_keys_file", api_keys_file),
                        ("--rate_limit_per_min", rate_limit_per_min),
                        ("--max_batch_size", max_batch_size),
                        ("--max_batch_wait_ms", max_batch_wait_ms), ("--max_tta", max_tta),
                        ("--device", device)):
        if value is not None:
            argv += [flag, str(value)]
    from roadvision.serving.__main__ import main

    main(argv)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the top-level CLI."""
    app.command("serve")(serve)
