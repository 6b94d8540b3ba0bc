"""``python -m roadvision.serving``: load one or more model bundles and serve them with KServe.

Examples::

    python -m roadvision.serving --model /mnt/models --model_name roadwork
    python -m roadvision.serving --model roadwork=models:/roadwork@champion \\
        --model lanes=models:/lanes@champion --redis redis://localhost:6379/0

Every flag also has an environment variable (see ``roadvision.serving.config``); the model
defaults to ``ROADVISION_MODEL_URI`` / ``ROADVISION_MODEL_NAME``. KServe's own flags
(``--http_port``, ``--grpc_port``, ``--enable_grpc``, ...) are accepted too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kserve import model_server

from roadvision.errors import UserError

from . import audit
from .auth import Authenticator, RateLimiter, load_api_keys
from .config import TTA_MODES, ServingConfig
from .predictor import RoadvisionModel, resolve_bundle
from .redis_client import ResilientRedis
from .server import Guard, RoadvisionModelServer

log = logging.getLogger("roadvision.serving")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m roadvision.serving", parents=[model_server.parser],
        description="Serve roadvision model bundles (KServe v1 + v2 REST).",
    )
    parser.add_argument(
        "--model", action="append", dest="models", metavar="[NAME=]URI", default=None,
        help="bundle directory or models:/NAME@ALIAS; repeat as NAME=URI to serve several "
             "models (default: $ROADVISION_MODEL_URI)")
    parser.add_argument("--redis", dest="redis_url", default=None,
                        help="Redis URL for the cache and rate limits (default: $REDIS_URL)")
    parser.add_argument("--api_keys_file", default=None,
                        help="file of API keys, one 'id:key' per line (enables auth)")
    parser.add_argument("--rate_limit_per_min", type=int, default=None)
    parser.add_argument("--max_batch_size", type=int, default=None)
    parser.add_argument("--max_batch_wait_ms", type=float, default=None)
    parser.add_argument("--cache_ttl_s", type=int, default=None)
    parser.add_argument("--max_body_bytes", type=int, default=None)
    parser.add_argument("--max_pixels", type=int, default=None)
    parser.add_argument("--max_tta", choices=TTA_MODES, default=None)
    parser.add_argument("--max_instances", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    # gRPC is off unless asked for: we serve REST, and a second port only gets in the way.
    parser.set_defaults(enable_grpc=False, model_name=None)
    return parser


def model_specs(args: argparse.Namespace, env=os.environ) -> list[tuple[str | None, str]]:
    """(name or None, uri) for every model to serve."""
    raw = args.models or ([env["ROADVISION_MODEL_URI"]] if env.get("ROADVISION_MODEL_URI")
                          else [])
    if not raw:
        raise UserError("no model given: pass --model URI (or set ROADVISION_MODEL_URI)")
    specs: list[tuple[str | None, str]] = []
    for entry in raw:
        name, sep, uri = entry.partition("=")
        if sep and name and "/" not in name and ":" not in name:
            specs.append((name, uri))
        else:
            specs.append((None, entry))
    unnamed = [i for i, (name, _) in enumerate(specs) if name is None]
    default_name = args.model_name or env.get("ROADVISION_MODEL_NAME")
    if default_name and unnamed:
        specs[unnamed[0]] = (default_name, specs[unnamed[0]][1])
    names = [n for n, _ in specs if n]
    if len(names) != len(set(names)):
        raise UserError(f"model names must be unique, got {names}")
    return specs


def bundle_task(uri: str) -> str:
    """The task named in a bundle's config.json (the default model name)."""
    import json

    found = json.loads((resolve_bundle(uri) / "config.json").read_text())
    stack = [found]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("task") in ("roadwork", "lanes"):
                return node["task"]
            stack.extend(node.values())
    raise UserError(f"model URI {uri!r}: config.json names no task; pass NAME=URI")


def build_models(args: argparse.Namespace, config: ServingConfig,
                 redis: ResilientRedis | None, model_cls=RoadvisionModel) -> list:
    """Construct and load every model (an unnamed one is served under its task's name)."""
    specs = [(name or bundle_task(uri), uri) for name, uri in model_specs(args)]
    names = [name for name, _ in specs]
    if len(names) != len(set(names)):
        raise UserError(f"two models would be served as {names}; name them with NAME=URI")
    models = []
    for name, uri in specs:
        model = model_cls(name, uri, config, redis)
        try:
            model.load()
        except UserError as exc:
            log.error("model %s failed to load: %s", name, exc)
        except Exception:  # noqa: BLE001 - one broken model must not take the others down
            log.exception("model %s failed to load", name)
        models.append(model)
    if not any(m.ready for m in models):
        raise UserError("no model could be loaded (see the errors above)")
    # Models that failed stay registered and answer 503 until
    # POST /v2/repository/models/NAME/load succeeds.
    return models


def main(argv: list[str] | None = None, model_cls=RoadvisionModel) -> None:
    """Parse flags, load every model (warm-up included), then serve until SIGTERM."""
    args = build_parser().parse_args(argv)
    try:
        config = ServingConfig.from_env(
            redis_url=args.redis_url, api_keys_file=args.api_keys_file,
            rate_limit_per_min=args.rate_limit_per_min, max_batch_size=args.max_batch_size,
            max_batch_wait_ms=args.max_batch_wait_ms, cache_ttl_s=args.cache_ttl_s,
            max_body_bytes=args.max_body_bytes, max_pixels=args.max_pixels,
            max_tta=args.max_tta, max_instances=args.max_instances, device=args.device,
        )
        if args.workers != 1:
            raise UserError("--workers must be 1: scale with replicas (one process each)")
        audit.configure()
        redis = (ResilientRedis(config.redis_url, op_timeout_s=config.redis_timeout_s)
                 if config.redis_url else None)
        keys = load_api_keys(config.api_keys_file) if config.api_keys_file else None
        guard = Guard(config, Authenticator(keys), RateLimiter(redis, config.rate_limit_per_min))
        models = build_models(args, config, redis, model_cls)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("serving %s on :%d (cache: %s, auth: %s, rate limit: %s/min)",
             [m.name for m in models], args.http_port, "on" if redis else "off",
             "on" if keys else "off", config.rate_limit_per_min or "off")
    RoadvisionModelServer(
        guard=guard, http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start(models)


if __name__ == "__main__":
    main()
