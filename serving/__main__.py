"""``python -m roadvision.serving``: load one or more model bundles and serve them with KServe.

Examples::

    python -m roadvision.serving --model /mnt/models --model_name roadwork
    python -m roadvision.serving --model roadwork=models:/roadwork@champion \\
        --model lanes=models:/lanes@champion --redis redis://localhost:6379/0
    python -m roadvision.serving --model roadwork=models:/roadwork@champion --canary-percent 10

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
from .areas import AreasConfig
from .auth import Authenticator, RateLimiter, load_api_keys
from .config import RATELIMIT_OUTAGE_POLICIES, TTA_MODES, ServingConfig
from .predictor import RoadvisionModel, resolve_bundle
from .redis_client import ResilientRedis
from .server import Guard, RoadvisionModelServer

log = logging.getLogger("roadvision.serving")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors (one line on stderr, exit code 2, no usage dump)."""

    def error(self, message: str):
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.add_argument("--host", default=None,
                        help="address to bind (default: $ROADVISION_HOST or 127.0.0.1; "
                             "0.0.0.0 in a container)")
    parser.add_argument("--allow_model_control", action="store_true", default=None,
                        help="enable POST /v2/repository/models/NAME/load and /unload "
                             "(off by default; they need a key when auth is on)")
    parser.add_argument("--max_windows", type=int, default=None,
                        help="compute budget: model inputs (lanes windows, roadwork views) per "
                             "request, TTA copies included")
    parser.add_argument("--request_timeout_s", type=float, default=None,
                        help="per-request deadline in seconds (504 past it)")
    parser.add_argument("--ratelimit_on_outage", choices=RATELIMIT_OUTAGE_POLICIES,
                        default=None, help="while Redis is down: open = serve unchecked "
                                           "(counted), closed = 503")
    parser.add_argument("--redis_pool_size", type=int, default=None,
                        help="Redis connections, opened at start")
    parser.add_argument("--forward_workers", default=None,
                        help="forward processes per model, each with cores/N torch threads; 0 = "
                             "the forward in a thread of this process; auto (default) = a "
                             "thread on CPU nodes of up to 2 usable cores, else 1 process")
    parser.add_argument("--local_cache_bytes", type=int, default=None,
                        help="in-process copy of hot cache entries in front of Redis, in bytes "
                             "(default 64 MiB; 0 = off)")
    parser.add_argument("--payload_log_uri", default=None,
                        help="log a sample of requests and answers as parquet under this folder "
                             "or s3://bucket/prefix (default: off)")
    parser.add_argument("--payload_log_sample_rate", type=float, default=None,
                        help="share of requests logged, 0..1 (default 0.1)")
    parser.add_argument("--payload_log_fields", default=None,
                        help="optional parts to log, comma-separated: image (else only its "
                             "sha256), metadata, prediction (default: all three)")
    parser.add_argument("--payload_log_gps", choices=("keep", "round", "drop"), default=None,
                        help="request GPS in the log: kept, rounded to ~1 km (default) or dropped")
    parser.add_argument("--payload_log_flush_s", type=float, default=None,
                        help="seconds before a partial batch is written (default 60)")
    parser.add_argument("--canary_percent", "--canary-percent", type=float, default=None,
                        help="canary: the challenger answers this share of requests, 0..100 "
                             "(chosen by a hash of the images; default 0 = off)")
    parser.add_argument("--shadow", dest="canary_shadow", action="store_true", default=None,
                        help="canary in shadow mode: the challenger answers --canary-percent "
                             "(default all) of requests in the background; counted and logged, "
                             "never returned")
    parser.add_argument("--challenger", action="append", dest="challengers",
                        metavar="[NAME=]URI", default=None,
                        help="the challenger of a canary (default: models:/X@challenger for a "
                             "model served from models:/X@champion; $ROADVISION_CHALLENGER_URI)")
    parser.add_argument("--canary_shadow_inflight", type=int, default=None,
                        help="shadow requests in flight at most; more are skipped (counted)")
    # POST /v1/areas:analyze (serving/areas.py; each flag also has an environment variable)
    parser.add_argument("--imagery-catalogue", "--imagery_catalogue", action="append",
                        dest="imagery_catalogues", metavar="CATALOGUE", default=None,
                        help="imagery catalogue JSON (roadvision imagery index) for analysis by "
                             "coordinates; repeat for several (enables POST /v1/areas:analyze)")
    parser.add_argument("--imagery-providers", "--imagery_providers", dest="imagery_providers",
                        metavar="FILE", default=None,
                        help="imagery provider chain (YAML/JSON, as `roadvision imagery "
                             "providers` reads it), asked after the --imagery-catalogue ones: "
                             "more catalogues, XYZ/WMTS tile providers for what they leave "
                             "uncovered (enables POST /v1/areas:analyze)")
    parser.add_argument("--max-area-km2", "--max_area_km2", dest="max_area_km2", type=float,
                        default=None, help="largest area one request may ask for (default 4)")
    parser.add_argument("--areas-rate-limit", "--areas_rate_limit", dest="areas_rate_limit",
                        default=None, help="the areas route's rate-limit profile per key, "
                                           "e.g. 50/h (the default), 10/min or off")
    parser.add_argument("--areas-cache-ttl-s", "--areas_cache_ttl_s", dest="areas_cache_ttl_s",
                        type=int, default=None, help="seconds an area's answer stays cached "
                                                     "(default 86400; 0 = until evicted)")
    parser.add_argument("--areas-timeout-s", "--areas_timeout_s", dest="areas_timeout_s",
                        type=float, default=None, help="deadline of one area (default 300 s)")
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


def name_from_bundle(uri: str) -> str:
    """The name an unnamed model is served under: its bundle's task (``roadwork``/``lanes``)."""
    from roadvision.models.bundle import bundle_task

    return bundle_task(resolve_bundle(uri))


def check_registry(specs: list[tuple[str | None, str]]) -> str | None:
    """When any model comes from the MLflow registry, probe it now (one real registry call):
    an unreachable server, a refused Host header (``--allowed-hosts``) or refused credentials
    stop the start with one line, instead of failing the first download. Returns the URI."""
    if not any(uri.startswith("models:/") for _, uri in specs):
        return None
    import importlib.util

    from roadvision.registry import check_tracking, tracking_uri

    resolved = tracking_uri()
    if resolved.startswith("sqlite:") and importlib.util.find_spec("sqlalchemy") is None:
        # The serve extra has mlflow-skinny: it talks to a tracking server, it opens no database.
        raise UserError(f"models:/ URIs need a tracking server here, not {resolved}: set "
                        "MLFLOW_TRACKING_URI=http(s)://HOST:PORT (this install has no local "
                        "MLflow store)")
    return check_tracking(parameter="MLFLOW_TRACKING_URI")


def challenger_specs(args: argparse.Namespace, names: list[str],
                     env=os.environ) -> dict[str, str]:
    """Served name -> challenger URI given with ``--challenger [NAME=]URI`` (a bare URI: the
    challenger of the only model served)."""
    raw = args.challengers or ([env["ROADVISION_CHALLENGER_URI"]]
                               if env.get("ROADVISION_CHALLENGER_URI") else [])
    out: dict[str, str] = {}
    for entry in raw:
        name, sep, uri = entry.partition("=")
        if not (sep and name and "/" not in name and ":" not in name):
            if len(names) != 1:
                raise UserError(f"--challenger {entry}: name the model it challenges "
                                f"(NAME=URI, one of {names})")
            name, uri = names[0], entry
        if name not in names:
            raise UserError(f"--challenger {entry}: no model {name!r} is served ({names})")
        out[name] = uri
    return out


def set_torch_threads(env: dict[str, str] | None = None) -> int:
    """Size torch's thread pool to the cores this pod may use (``runtime.cores``), unless the
    operator set ``OMP_NUM_THREADS``: torch's default is the node's core count, which under a
    CPU limit means threads that mostly wait to be throttled."""
    import torch

    env = os.environ if env is None else env
    if not env.get("OMP_NUM_THREADS"):
        from roadvision.runtime.cores import usable_cores

        torch.set_num_threads(usable_cores())
    return torch.get_num_threads()


def build_models(args: argparse.Namespace, config: ServingConfig,
                 redis: ResilientRedis | None, model_cls=RoadvisionModel) -> list:
    """Construct and load every model (an unnamed one is served under its task's name); with
    a canary, a model with a challenger is served as both arms (``serving/canary.py``)."""
    from .canary import build_canary, challenger_uri, split_from_config

    specs = [(name or name_from_bundle(uri), uri) for name, uri in model_specs(args)]
    names = [name for name, _ in specs]
    if len(names) != len(set(names)):
        raise UserError(f"two models would be served as {names}; name them with NAME=URI")
    canary = split_from_config(config).active
    challengers = challenger_specs(args, names) if canary else {}
    if canary:
        challengers = {name: challengers.get(name) or challenger_uri(uri)
                       for name, uri in specs if challengers.get(name) or challenger_uri(uri)}
        if not challengers:
            raise UserError("a canary needs a challenger: serve models:/NAME@champion (its "
                            "challenger is models:/NAME@challenger) or pass --challenger URI")
    models = []
    for name, uri in specs:
        model = (build_canary(name, uri, challengers[name], config, redis, model_cls)
                 if name in challengers else model_cls(name, uri, config, redis))
        try:
            model.load()
        except UserError as exc:
            log.error("model %s failed to load: %s", name, exc)
        except Exception:  # noqa: BLE001 - one broken model must not take the others down
            log.exception("model %s failed to load", name)
        models.append(model)
    if not any(m.ready for m in models):
        raise UserError("no model could be loaded (see the errors above)")
    # Models that failed stay registered and answer 503 until a restart, or until
    # POST /v2/repository/models/NAME/load succeeds (with --allow_model_control).
    return models


def configure_logging(stream=None) -> None:
    """Our server's own lines (the startup summary, the event loop, Redis warm-up, warnings)
    at INFO on stderr, in KServe's line format: KServe's logging set-up configures only its
    own and uvicorn's loggers, so without this they fell to Python's last-resort handler,
    which drops INFO. Idempotent."""
    served = logging.getLogger("roadvision.serving")
    if any(getattr(h, "_roadvision_serving", False) for h in served.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S"))
    handler._roadvision_serving = True  # noqa: SLF001 - marker for idempotence
    served.addHandler(handler)
    served.setLevel(logging.INFO)
    served.propagate = False


def main(argv: list[str] | None = None, model_cls=RoadvisionModel) -> None:
    """Parse flags, load every model (warm-up included), then serve until SIGTERM."""
    try:
        args = build_parser().parse_args(argv)
        config = ServingConfig.from_env(
            redis_url=args.redis_url, api_keys_file=args.api_keys_file,
            rate_limit_per_min=args.rate_limit_per_min, max_batch_size=args.max_batch_size,
            max_batch_wait_ms=args.max_batch_wait_ms, cache_ttl_s=args.cache_ttl_s,
            max_body_bytes=args.max_body_bytes, max_pixels=args.max_pixels,
            max_tta=args.max_tta, max_instances=args.max_instances, device=args.device,
            host=args.host, allow_model_control=args.allow_model_control,
            max_windows=args.max_windows, request_timeout_s=args.request_timeout_s,
            ratelimit_on_outage=args.ratelimit_on_outage, redis_pool_size=args.redis_pool_size,
            forward_workers=args.forward_workers, local_cache_bytes=args.local_cache_bytes,
            payload_log_uri=args.payload_log_uri,
            payload_log_sample_rate=args.payload_log_sample_rate,
            payload_log_fields=args.payload_log_fields, payload_log_gps=args.payload_log_gps,
            payload_log_flush_s=args.payload_log_flush_s, canary_percent=args.canary_percent,
            canary_shadow=args.canary_shadow,
            canary_shadow_inflight=args.canary_shadow_inflight,
        )
        if not 1 <= args.http_port <= 65535:
            raise UserError(f"HTTP port {args.http_port} is not between 1 and 65535")
        if args.workers != 1:
            raise UserError("--workers must be 1: scale with replicas (one process each)")
        audit.configure()
        configure_logging()
        torch_threads = set_torch_threads()
        redis = (ResilientRedis(config.redis_url, op_timeout_s=config.redis_timeout_s,
                                pool_size=config.redis_pool_size)
                 if config.redis_url else None)
        keys = load_api_keys(config.api_keys_file) if config.api_keys_file else None
        limiter = RateLimiter(redis, config.rate_limit_per_min,
                              timeout_s=config.ratelimit_timeout_s,
                              on_outage=config.ratelimit_on_outage)
        areas = AreasConfig.from_env(
            catalogues=tuple(args.imagery_catalogues) if args.imagery_catalogues else None,
            providers=args.imagery_providers,
            max_area_km2=args.max_area_km2, rate_limit=args.areas_rate_limit,
            cache_ttl_s=args.areas_cache_ttl_s, timeout_s=args.areas_timeout_s)
        guard = Guard(config, Authenticator(keys), limiter, redis=redis, areas=areas)
        check_registry(model_specs(args))
        models = build_models(args, config, redis, model_cls)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("serving %s on %s:%d (cache: %s, auth: %s, rate limit: %s/min, model control: %s, "
             "forward workers: %s, torch threads: %d)",
             [m.name for m in models], config.host, args.http_port, "on" if redis else "off",
             "on" if keys else "off", config.rate_limit_per_min or "off",
             "on" if config.allow_model_control else "off",
             config.forward_workers or "none (a thread)", torch_threads)
    if areas.enabled:
        log.info("areas: POST /v1/areas:analyze over %d imagery catalogue(s)%s, at most %g "
                 "km^2, rate limit %s per key", len(areas.catalogues),
                 f" then the providers of {areas.providers}" if areas.providers else "",
                 areas.max_area_km2, areas.rate_limit if redis else "off (no Redis)")
    RoadvisionModelServer(
        guard=guard, http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start(models)


if __name__ == "__main__":
    main()
