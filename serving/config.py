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
    redis_timeout_s: float = 0.1  # ROADVISION_REDIS_TIMEOUT_S; one Redis command, connect incl.
    device: str = ""  # ROADVISION_DEVICE; "" = cuda when available, else cpu

    def __post_init__(self) -> None:
        if self.max_tta not in TTA_MODES:
            raise UserError(f"max TTA {self.max_tta!r} is not one of {TTA_MODES}")
        for name in ("max_batch_size", "max_body_bytes", "max_pixels", "max_instances"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_batch_wait_ms", "cache_ttl_s", "rate_limit_per_min"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")

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
    "device": "ROADVISION_DEVICE",
}

_FLOATS = {"max_batch_wait_ms", "redis_timeout_s"}
_STRINGS = {"redis_url", "api_keys_file", "max_tta", "device"}


def _convert(name: str, raw: str, var: str):
    if name in _STRINGS:
        return raw.strip()
    try:
        return float(raw) if name in _FLOATS else int(raw)
    except ValueError as exc:
        kind = "a number" if name in _FLOATS else "an integer"
        raise UserError(f"{var}={raw!r} is not {kind}") from exc
