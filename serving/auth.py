"""Optional API keys and per-key rate limits.

Keys come from a file (a mounted Kubernetes Secret): one key per line, as ``secret``,
``key_id:secret`` or ``key_id:secret:limit_per_min`` (a per-key rate limit overriding the
server-wide one; 0 = unlimited). Without an id, the id is ``key-`` plus the first 8 hex digits
of the key's hash. Secrets cannot contain ``:``.
Only sha256 digests are kept in memory; a presented key is hashed and compared against every
digest with ``hmac.compare_digest`` (constant time, and no early exit on the first match).
Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Rate limits: a sliding window per key id (one minute unless a limiter is given another window:
``parse_rate`` reads profiles such as ``50/h``), shared by every replica through Redis.
One Lua script (atomic on the Redis server, timed by the Redis clock so replicas agree) drops
the key's admissions older than 60 s from a sorted set, admits the request if fewer than the
limit remain, and records it. So at most ``limit`` requests are admitted in any 60 s, exactly,
however many arrive at once (the old ``INCR`` per calendar minute admitted twice the limit
across a minute boundary). Refused requests are not recorded. Over the limit -> 429 with
``Retry-After`` = seconds until the oldest admission leaves the window. A named limiter (the
areas route's ``50/h`` profile) counts in its own Redis keys, apart from the predict routes'.

When Redis is unavailable the policy is explicit (``ServingConfig.ratelimit_on_outage``):
``open`` (the default) lets the request through unchecked and counts it in
``roadvision_ratelimit_errors_total`` - alert on that counter: an outage of the limiter must
not become an outage of the API; ``closed`` refuses it with 503 ``rate_limiter_unavailable``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from pathlib import Path

from roadvision.errors import UserError

from . import metrics
from .errors import RateLimited, RateLimiterUnavailable, Unauthorized
from .redis_client import RedisUnavailable, ResilientRedis

ANONYMOUS = "anonymous"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    digest: bytes  # sha256 of the secret; the secret itself is never stored
    limit_per_min: int | None = None  # None = the server-wide limit


def parse_api_keys(text: str, source: str = "api keys") -> list[ApiKey]:
    """Parse the key file format described in the module docstring."""
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(":")]
        limit = None
        if len(parts) == 1:
            key_id, secret = "key-" + hashlib.sha256(parts[0].encode()).hexdigest()[:8], parts[0]
        elif len(parts) in (2, 3):
            key_id, secret = parts[0], parts[1]
            if len(parts) == 3:
                if not parts[2].isdigit():
                    raise UserError(f"{source}:{number}: rate limit {parts[2]!r} is not a "
                                    "non-negative integer")
                limit = int(parts[2])
        else:
            raise UserError(f"{source}:{number}: expected 'key', 'id:key' or 'id:key:limit'")
        if not key_id:
            raise UserError(f"{source}:{number}: empty key id")
        if len(secret) < 16:
            raise UserError(f"{source}:{number}: API key shorter than 16 characters")
        if key_id in seen:
            raise UserError(f"{source}:{number}: duplicate key id {key_id!r}")
        seen.add(key_id)
        keys.append(ApiKey(key_id, _digest(secret), limit))
    if not keys:
        raise UserError(f"{source}: no API keys found (one key or 'id:key' per line)")
    return keys


def load_api_keys(path: str | Path) -> list[ApiKey]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"API key file not found: {path}")
    return parse_api_keys(path.read_text(), str(path))


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a client sent (lower-case header names, as Starlette gives them)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


class Authenticator:
    """Resolve a request to a key id; ``keys=None`` disables authentication."""

    def __init__(self, keys: list[ApiKey] | None) -> None:
        self.keys = keys
        self._limits = {k.key_id: k.limit_per_min for k in keys or []}

    def limit_for(self, key_id: str) -> int | None:
        """The key's own rate limit, or None for the server-wide one."""
        return self._limits.get(key_id)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def key_id(self, headers: dict[str, str], client: str | None = None) -> str:
        """The caller's key id; raises Unauthorized when keys are on and this one is unknown.

        Without keys, callers are told apart by address (``ip:<addr>``) for rate limiting.
        """
        if not self.enabled:
            return f"ip:{client}" if client else ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or "
                               "'X-API-Key: <key>'", reason="unauthorized")
        digest = _digest(key)
        match = None
        for entry in self.keys:  # compare against all, so timing does not reveal position
            if hmac.compare_digest(digest, entry.digest) and match is None:
                match = entry.key_id
        if match is None:
            raise Unauthorized("invalid API key", reason="unauthorized")
        return match


#: KEYS[1] = the key's sorted set; ARGV = window ms, limit, a unique member.
#: Returns {admitted (0/1), ms until the oldest admission leaves the window}.
SLIDING_WINDOW_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""

OUTAGE_POLICIES = ("open", "closed")
WINDOW_S = 60
#: Units a rate profile may use (``50/h``), in seconds.
RATE_UNITS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400,
              "day": 86400}
_WINDOW_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def parse_rate(text: str, what: str = "rate limit") -> tuple[int, int]:
    """``"50/h"`` -> (50, 3600): requests per window; ``"off"`` or ``"0"`` -> (0, 3600)."""
    raw = str(text).strip().lower()
    if raw in ("off", "none", "0", ""):
        return 0, 3600
    count, sep, unit = raw.partition("/")
    if not sep or not count.isdigit() or unit not in RATE_UNITS:
        raise UserError(f"{what} {text!r}: expected COUNT/UNIT, e.g. 50/h (units: "
                        f"{', '.join(sorted(set(RATE_UNITS)))}) or off")
    return int(count), RATE_UNITS[unit]


def describe_window(window_s: int) -> str:
    """``3600`` -> ``"hour"``; other windows in seconds."""
    return _WINDOW_NAMES.get(window_s, f"{window_s} s")


class RateLimiter:
    """Sliding-window per-key limits in Redis; ``limit_per_min <= 0`` or no Redis disables it.

    Args:
        redis: the shared resilient client, or None.
        limit_per_min: the server-wide limit per window (a key may carry its own); per minute
            unless ``window_s`` says otherwise.
        timeout_s: deadline for one check. Longer than the cache's: a check that times out
            falls under the outage policy, so it must not time out merely because a burst
            keeps the event loop busy.
        on_outage: ``open`` or ``closed`` (see the module docstring).
        window_s: the sliding window's length (``parse_rate`` reads ``50/h``).
        name: the Redis key space; limiters with different names count apart.
    """

    def __init__(self, redis: ResilientRedis | None, limit_per_min: int, *,
                 timeout_s: float = 1.0, on_outage: str = "open", window_s: int = WINDOW_S,
                 name: str = "sw") -> None:
        if on_outage not in OUTAGE_POLICIES:
            raise UserError(f"rate limit outage policy {on_outage!r} is not one of "
                            f"{OUTAGE_POLICIES}")
        self.redis = redis
        self.limit = limit_per_min
        self.timeout_s = timeout_s
        self.on_outage = on_outage
        self.window_s = window_s
        self.name = name
        self._script = None

    @property
    def enabled(self) -> bool:
        return self.redis is not None and self.limit > 0

    async def check(self, key_id: str, model: str, limit: int | None = None) -> None:
        """Count one request against ``limit`` (default: the server-wide one); raises
        RateLimited when the window is used up."""
        limit = self.limit if limit is None else limit
        if self.redis is None or limit <= 0:
            return
        redis_key = f"rv:rl:{self.name}:{key_id}"
        member = uuid.uuid4().hex

        async def _admit(client):
            if self._script is None:
                self._script = client.register_script(SLIDING_WINDOW_LUA)
            return await self._script(keys=[redis_key],
                                      args=[self.window_s * 1000, limit, member])

        try:
            admitted, wait_ms = await self.redis.call(_admit, timeout_s=self.timeout_s)
        except RedisUnavailable:
            metrics.RATELIMIT_ERRORS.labels(model).inc()
            if self.on_outage == "closed":
                raise RateLimiterUnavailable() from None
            return
        if not int(admitted):
            exc = RateLimited(max(1, -(-int(wait_ms) // 1000)), limit)
            if self.window_s != WINDOW_S:  # RateLimited's message says "per minute"
                exc.message = (f"rate limit of {limit} requests per "
                               f"{describe_window(self.window_s)} ({self.name}) exceeded; "
                               f"retry after {exc.retry_after_s} s")
                exc.args = (exc.message,)
            raise exc
