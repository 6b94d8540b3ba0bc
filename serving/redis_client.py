"""One Redis connection pool for the cache and the rate limiter, behind a circuit breaker.

Redis is an accelerator, never a dependency a request can fail on. So: no client-side retries
(redis-py retries three times by default, which multiplies an outage's latency), a deadline on
every call, and after a real outage the circuit opens for a backoff period (doubling up to a
cap) during which calls fail immediately without touching the network. The first call after
the period is the probe: success closes the circuit, failure doubles the wait.

What counts as an outage, and what does not: under a burst the first version of this module
opened the circuit while Redis was healthy (new connections missed a 100 ms connect timeout,
and the rate limiter then let everything through). Now

* the pool is bounded (``pool_size`` connections, callers wait for a free one instead of
  opening more) and warmed by :meth:`warm` before the server takes traffic, so a burst never
  pays for connecting;
* a refused or reset connection is an outage: the circuit opens at once and the pool's
  connections are dropped (after the backoff they reconnect one by one as calls need them; a
  re-warm there would hold every connection while requests wait for one);
* a timeout is an outage only when no other call succeeded since the timed-out one began
  (Redis is silent, e.g. a partitioned network). A call that timed out while others were being
  answered was slow (the event loop or the pool was busy): it fails alone and is counted in
  ``slow_calls``, and the circuit stays closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("roadvision.serving.redis")
T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis failed, timed out, or its circuit is open; the caller degrades gracefully."""


class ResilientRedis:
    """An asyncio Redis client that fails fast while Redis is down.

    Args:
        url: ``redis://host:port/db``.
        op_timeout_s: default deadline for one call (waiting for a pooled connection
            included); a caller may pass its own.
        pool_size: most connections held open; further callers wait for a free one.
        connect_timeout_s: budget for opening one connection (only a new or broken
            connection connects; the pool is warmed at start).
        backoff_initial_s: how long the circuit stays open after the first failure.
        backoff_max_s: cap for the doubling backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        op_timeout_s: float = 0.1,
        pool_size: int = 16,
        connect_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.url = url
        self.op_timeout_s = op_timeout_s
        self.pool_size = pool_size
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._backoff_s = backoff_initial_s
        self._open_until = 0.0
        self._last_success = float("-inf")
        self.failures = 0  # failed calls that counted as an outage (for tests and logs)
        self.slow_calls = 0  # calls that timed out while Redis was answering others
        # Sockets get no read timeout of their own: the per-call deadline (asyncio.timeout)
        # bounds every call, and a socket timeout shorter than a caller's deadline would cut
        # a slow-but-healthy answer short.
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=None,
            socket_connect_timeout=connect_timeout_s, socket_keepalive=True,
            retry=Retry(NoBackoff(), 0), retry_on_error=[], health_check_interval=0,
        )
        self._client = Redis(connection_pool=self._pool)

    @property
    def circuit_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def warm(self, connections: int | None = None) -> int:
        """Open up to ``connections`` (default: the pool size) connections now; returns how
        many opened. Call it on the serving event loop before taking traffic. A Redis that is
        down at start is not an error: the circuit handles it."""
        count = min(self.pool_size, connections or self.pool_size)
        held = []
        try:
            async with asyncio.timeout(max(1.0, self.op_timeout_s * 10)):
                for _ in range(count):
                    held.append(await self._pool.get_connection())
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis at %s: warmed %d of %d connections (%s)", self._safe_url(),
                        len(held), count, type(exc).__name__)
        finally:
            for connection in held:
                await self._pool.release(connection)
        if held:
            self._last_success = time.monotonic()
        return len(held)

    async def call(self, op: Callable[[Redis], Awaitable[T]], *,
                   timeout_s: float | None = None) -> T:
        """Run ``op(client)`` within ``timeout_s`` (default ``op_timeout_s``); raises
        RedisUnavailable instead of any Redis or socket error."""
        if self.circuit_open:
            raise RedisUnavailable("circuit open")
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s or self.op_timeout_s):
                result = await op(self._client)
        except (TimeoutError, RedisTimeoutError) as exc:
            if self._last_success > started:  # others were answered meanwhile: slow, not down
                self.slow_calls += 1
            else:
                self._trip(exc)
            raise RedisUnavailable("timed out") from exc
        except (RedisError, OSError) as exc:
            self._trip(exc)
            # Every pooled connection is suspect now (a restarted Redis resets them all): drop
            # them, so that the probe after the backoff connects afresh instead of failing on
            # one stale connection after another.
            with contextlib.suppress(RedisError, OSError):
                await self._pool.disconnect()
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        self._last_success = time.monotonic()
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
            await self._pool.disconnect()
