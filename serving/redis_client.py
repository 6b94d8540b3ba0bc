"""One Redis connection for the cache and the rate limiter, behind a circuit breaker.

Redis is an accelerator, never a dependency a request can fail on. So: short socket timeouts,
no client-side retries (redis-py retries three times by default, which multiplies an outage's
latency), and after a failure the circuit opens for a backoff period (doubling up to a cap)
during which calls fail immediately without touching the network. The first call after the
period is the probe: success closes the circuit, failure doubles the wait. A dead Redis thus
costs one short timeout per backoff period, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("roadvision.serving.redis")
T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis failed, timed out, or its circuit is open; the caller degrades gracefully."""


class ResilientRedis:
    """An asyncio Redis client that fails fast while Redis is down.

    Args:
        url: ``redis://host:port/db``.
        op_timeout_s: budget for one command, connecting included.
        backoff_initial_s: how long the circuit stays open after the first failure.
        backoff_max_s: cap for the doubling backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        op_timeout_s: float = 0.1,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.url = url
        self.op_timeout_s = op_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._backoff_s = backoff_initial_s
        self._open_until = 0.0
        self.failures = 0  # total failed calls (for tests and logs)
        self._client = Redis.from_url(
            url,
            socket_timeout=op_timeout_s,
            socket_connect_timeout=op_timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            health_check_interval=0,
        )

    @property
    def circuit_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def call(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``op(client)``; raises RedisUnavailable instead of any Redis or socket error."""
        if self.circuit_open:
            raise RedisUnavailable("circuit open")
        try:
            async with asyncio.timeout(self.op_timeout_s * 2):
                result = await op(self._client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip(exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        if self._backoff_s != self.backoff_initial_s:
            log.warning("redis at %s is reachable again", self._safe_url())
        self._backoff_s = self.backoff_initial_s
        return result

    def _trip(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.circuit_open:
            log.warning(
                "redis at %s failed (%s: %s); serving without it for %.1f s",
                self._safe_url(), type(exc).__name__, exc, self._backoff_s,
            )
            self._open_until = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)

    def _safe_url(self) -> str:
        """The URL without credentials, for logs."""
        head, sep, tail = self.url.rpartition("@")
        return f"redis://***@{tail}" if sep else head or self.url

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
