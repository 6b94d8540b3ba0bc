"""``ServingConfig``: the server's limits and switches, from flags or environment variables.

Every field has an environment variable (the Kubernetes manifests set these) and a default
that is safe for a public endpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from roadvision.data.images import DEFAULT_MAX_PIXELS
from roadvision.errors import UserError

TTA_MODES = ("none", "flip", "full")
RATELIMIT_OUTAGE_POLICIES = ("open", "closed")
NO_REDIS = ("", "none", "off")  # --redis none: no cache, no rate limits
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass
class ServingConfig:
    redis_url: str | None = None  # REDIS_URL; None = no cache, no rate limits
    api_keys_file: str | None = None  # ROADVISION_API_KEYS_FILE; None = no authentication
    rate_limit_per_min: int = 0  # ROADVISION_RATE_LIMIT_PER_MIN; per key id, 0 = off
    max_batch_size: int = 8  # ROADVISION_MAX_BATCH_SIZE; instances per forward
    max_batch_wait_ms: float = 2.0  # ROADVISION_MAX_BATCH_WAIT_MS; first item waits this long
    cache_ttl_s: int = 3600  # ROADVISION_CACHE_TTL_S; 0 = no expiry (Redis eviction decides)
    cache_max_value_bytes: int = 1 << 20  # ROADVISION_CACHE_MAX_VALUE_BYTES; larger not cached
    max_body_bytes: int = 20 << 20  # ROADVISION_MAX_BODY_BYTES; checked before reading
    max_pixels: int = DEFAULT_MAX_PIXELS  # ROADVISION_MAX_PIXELS; from the header, pre-decode
    max_tta: str = "full"  # ROADVISION_MAX_TTA; the costliest mode a request may ask for
    max_instances: int = 16  # ROADVISION_MAX_INSTANCES; per request
    redis_timeout_s: float = 0.1  # ROADVISION_REDIS_TIMEOUT_S; one cache call, pool wait incl.
    redis_pool_size: int = 16  # ROADVISION_REDIS_POOL_SIZE; connections, opened at start
    ratelimit_timeout_s: float = 1.0  # ROADVISION_RATELIMIT_TIMEOUT_S; one rate-limit check
    ratelimit_on_outage: str = "open"  # ROADVISION_RATELIMIT_ON_OUTAGE; open = serve unchecked
    # (counted in roadvision_ratelimit_errors_total), closed = 503 while Redis is down
    max_windows: int = 256  # ROADVISION_MAX_WINDOWS; compute budget per request: model inputs
    # (lanes sliding windows, roadwork views) summed over instances and TTA copies
    request_timeout_s: float = 30.0  # ROADVISION_REQUEST_TIMEOUT_S; deadline, 504 past it
    allow_model_control: bool = False  # ROADVISION_ALLOW_MODEL_CONTROL; the repository
    # load/unload routes (a key is needed too when auth is on)
    host: str = "127.0.0.1"  # ROADVISION_HOST; the address to bind (0.0.0.0 in containers)
    device: str = ""  # ROADVISION_DEVICE; "" = cuda when available, else cpu
    forward_workers: int | str = "auto"  # ROADVISION_FORWARD_WORKERS; forward processes per
    # model, each with cores/N torch threads; 0 = the forward in a thread of the server process;
    # auto = ``auto_forward_workers`` (resolved to an int here)
    local_cache_bytes: int = 64 << 20  # ROADVISION_LOCAL_CACHE_BYTES; in-process copy of hot
    # cache entries in front of Redis (0 = off): a repeat skips the Redis round trip
    payload_log_uri: str | None = None  # ROADVISION_PAYLOAD_LOG_URI; folder or s3://; None = off
    payload_log_sample_rate: float = 0.1  # ROADVISION_PAYLOAD_LOG_SAMPLE_RATE; share of requests
    payload_log_fields: str = "image,metadata,prediction"  # ROADVISION_PAYLOAD_LOG_FIELDS;
    # optional parts (without image: only the content hash is logged)
    payload_log_gps: str = "round"  # ROADVISION_PAYLOAD_LOG_GPS; keep, round (~1 km) or drop
    payload_log_queue_size: int = 1024  # ROADVISION_PAYLOAD_LOG_QUEUE_SIZE; more are dropped
    payload_log_flush_s: float = 60.0  # ROADVISION_PAYLOAD_LOG_FLUSH_S; partial batch written
    canary_percent: float = 0.0  # ROADVISION_CANARY_PERCENT; the challenger's share of requests,
    # 0..100 (serving/canary.py); with canary_shadow the share mirrored to it (0 = all)
    canary_shadow: bool = False  # ROADVISION_CANARY_SHADOW; the challenger answers in the
    # background only: counted and logged, never returned
    canary_shadow_inflight: int = 32  # ROADVISION_CANARY_SHADOW_INFLIGHT; mirrors in flight,
    # more are skipped (counted) so that a slow challenger never piles up work

    def __post_init__(self) -> None:
        if self.redis_url is not None and self.redis_url.strip().lower() in NO_REDIS:
            self.redis_url = None
        if self.redis_url is not None and not self.redis_url.startswith(REDIS_SCHEMES):
            raise UserError(f"Redis URL {self.redis_url!r} must start with one of "
                            f"{', '.join(REDIS_SCHEMES)} (or be 'none' for no cache)")
        if self.max_tta not in TTA_MODES:
            raise UserError(f"max TTA {self.max_tta!r} is not one of {TTA_MODES}")
        if self.ratelimit_on_outage not in RATELIMIT_OUTAGE_POLICIES:
            raise UserError(f"rate limit outage policy {self.ratelimit_on_outage!r} is not one "
                            f"of {RATELIMIT_OUTAGE_POLICIES}")
        if not 0.0 <= self.canary_percent <= 100.0:
            raise UserError(f"canary_percent must be in [0, 100], got {self.canary_percent:g}")
        for name in ("max_batch_size", "max_body_bytes", "max_pixels", "max_instances",
                     "redis_pool_size", "max_windows", "canary_shadow_inflight"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.forward_workers = _forward_workers(self.forward_workers, self.device)
        for name in ("max_batch_wait_ms", "cache_ttl_s", "rate_limit_per_min",
                     "forward_workers", "local_cache_bytes"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("redis_timeout_s", "ratelimit_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be > 0, got {getattr(self, name)}")

    def torch_device(self) -> str:
        """The device the model runs on: ``device``, or CUDA when torch sees it, else CPU."""
        return self.device or _default_device()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> ServingConfig:
        """Defaults < environment < explicit overrides (None overrides are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            var = ENV_VARS[f.name]
            if var in env and env[var] != "":
                values[f.name] = _convert(f.name, env[var], var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


ENV_VARS = {
    "redis_url": "REDIS_URL",
    "api_keys_file": "ROADVISION_API_KEYS_FILE",
    "rate_limit_per_min": "ROADVISION_RATE_LIMIT_PER_MIN",
    "max_batch_size": "ROADVISION_MAX_BATCH_SIZE",
    "max_batch_wait_ms": "ROADVISION_MAX_BATCH_WAIT_MS",
    "cache_ttl_s": "ROADVISION_CACHE_TTL_S",
    "cache_max_value_bytes": "ROADVISION_CACHE_MAX_VALUE_BYTES",
    "max_body_bytes": "ROADVISION_MAX_BODY_BYTES",
    "max_pixels": "ROADVISION_MAX_PIXELS",
    "max_tta": "ROADVISION_MAX_TTA",
    "max_instances": "ROADVISION_MAX_INSTANCES",
    "redis_timeout_s": "ROADVISION_REDIS_TIMEOUT_S",
    "redis_pool_size": "ROADVISION_REDIS_POOL_SIZE",
    "ratelimit_timeout_s": "ROADVISION_RATELIMIT_TIMEOUT_S",
    "ratelimit_on_outage": "ROADVISION_RATELIMIT_ON_OUTAGE",
    "max_windows": "ROADVISION_MAX_WINDOWS",
    "request_timeout_s": "ROADVISION_REQUEST_TIMEOUT_S",
    "allow_model_control": "ROADVISION_ALLOW_MODEL_CONTROL",
    "host": "ROADVISION_HOST",
    "device": "ROADVISION_DEVICE",
    "forward_workers": "ROADVISION_FORWARD_WORKERS",
    "local_cache_bytes": "ROADVISION_LOCAL_CACHE_BYTES",
    "payload_log_uri": "ROADVISION_PAYLOAD_LOG_URI",
    "payload_log_sample_rate": "ROADVISION_PAYLOAD_LOG_SAMPLE_RATE",
    "payload_log_fields": "ROADVISION_PAYLOAD_LOG_FIELDS",
    "payload_log_gps": "ROADVISION_PAYLOAD_LOG_GPS",
    "payload_log_queue_size": "ROADVISION_PAYLOAD_LOG_QUEUE_SIZE",
    "payload_log_flush_s": "ROADVISION_PAYLOAD_LOG_FLUSH_S",
    "canary_percent": "ROADVISION_CANARY_PERCENT",
    "canary_shadow": "ROADVISION_CANARY_SHADOW",
    "canary_shadow_inflight": "ROADVISION_CANARY_SHADOW_INFLIGHT",
}

_FLOATS = {"max_batch_wait_ms", "redis_timeout_s", "ratelimit_timeout_s", "request_timeout_s",
           "payload_log_sample_rate", "payload_log_flush_s", "canary_percent"}
_STRINGS = {"redis_url", "api_keys_file", "max_tta", "device", "ratelimit_on_outage", "host",
            "payload_log_uri", "payload_log_fields", "payload_log_gps", "forward_workers"}
_BOOLS = {"allow_model_control", "canary_shadow"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(name: str, raw: str, var: str):
    if name in _STRINGS:
        return raw.strip()
    if name in _BOOLS:
        if raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
        raise UserError(f"{var}={raw!r} is not a boolean (true/false)")
    try:
        return float(raw) if name in _FLOATS else int(raw)
    except ValueError as exc:
        kind = "a number" if name in _FLOATS else "an integer"
        raise UserError(f"{var}={raw!r} is not {kind}") from exc


def auto_forward_workers(device: str = "", cores: int | None = None) -> int:
    """``forward_workers=auto``: a worker process where the front and the forward each get
    cores of their own, else the forward in a thread.

    Measured side by side (benchmarks/RESULTS.md, "serving peers"): on 2 cores the thread led
    the worker process at c=16 by about 20 % in interleaved pairs on 2026-12-02 evening (the
    process spent about 5 CPU ms more per request: the front and the worker compute at the same
    time on the two cores and each runs slower), and the thread's server then led PyTriton and
    LitServe in both conditions. One earlier pair the same day gave the process +12 %, so the
    order depends on the host; the thread is the choice the peer table supports. On a GPU the
    forward's CPU share is small and a worker keeps the front's decoding from stalling it.
    """
    if device.startswith("cuda"):
        return 1
    if cores is None:
        from roadvision.runtime.cores import usable_cores

        cores = usable_cores()
    return 0 if cores <= 2 else 1


def _forward_workers(value: int | str, device: str) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return auto_forward_workers(device or _default_device())
    try:
        return int(text)
    except ValueError:
        raise UserError(f"forward_workers {value!r} is not an integer or 'auto'") from None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
