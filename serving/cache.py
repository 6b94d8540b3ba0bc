"""Redis response cache keyed by everything that determines a prediction.

Key = sha256 over (model version, task, TTA settings, the image as sent (bytes or base64 text),
canonical metadata JSON).
The model version is the bundle's weight hash, so a new version can never read an old
version's answers; equal inputs with equivalent metadata spellings ("Sunny" vs "clear") share an
entry because metadata is canonicalised (normalised vocabulary, sorted keys) before hashing.

Values are the JSON of one instance's result, without the per-response fields (``cached``).
Redis trouble never fails a request: reads return misses and writes are skipped, both counted
in ``roadvision_cache_errors_total``.

Two levels: a bounded in-process copy (``LocalCache``, LRU by bytes, same expiry) sits in front
of Redis, so a repeat on the same replica costs no Redis round trip; Redis is what replicas
share and what survives a restart. A key names the model version and the exact input, so a
local copy can never be staler than Redis's. Writes of results that finish in the same
event-loop turn (one micro-batch) travel in one Redis pipeline; each request still returns only
after its results are stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from . import metrics
from .redis_client import RedisUnavailable, ResilientRedis

KEY_PREFIX = "rv:pred:v1:"


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, floats as Python prints them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def cache_key(
    model_version: str, task: str, tta: str, image: bytes, metadata: dict[str, Any] | None,
    image_encoding: str = "raw",
) -> str:
    """The Redis key for one instance; each part is length-prefixed so parts cannot collide.

    ``image`` is the image as sent: its bytes (``image_encoding`` "raw") or its base64 text
    ("base64"), so that a hit needs no decoding. The same picture sent both ways is two
    entries.
    """
    digest = hashlib.sha256()
    for part in (
        model_version.encode(), task.encode(), canonical_json({"tta": tta}),
        image_encoding.encode(), image, canonical_json(metadata or {}),
    ):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return KEY_PREFIX + digest.hexdigest()


class LocalCache:
    """A bounded in-process map of encoded results: least recently used out first once
    ``max_bytes`` is reached, each entry dropped ``ttl_s`` after it was stored (0: never).
    ``clock`` (seconds, monotonic) is what expiry is measured on; a test moves it instead of
    sleeping."""

    def __init__(self, max_bytes: int, ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.size = 0
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires and self.clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        expires = self.clock() + self.ttl_s if self.ttl_s else 0.0
        self._entries[key] = (value, expires)
        self.size += len(value)
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.size -= len(value)


class PredictionCache:
    """Get/set instance results in Redis; ``redis=None`` disables caching (no errors counted).

    Args:
        redis: the shared resilient client, or None.
        model: ``model`` label for the metrics.
        ttl_s: expiry of each entry; 0 keeps entries until Redis evicts them.
        max_value_bytes: larger results (big lane masks) are not cached.
        local_bytes: size of the in-process level in front of Redis (0: none).
    """

    def __init__(
        self, redis: ResilientRedis | None, model: str, *, ttl_s: int = 3600,
        max_value_bytes: int = 1 << 20, local_bytes: int = 0,
    ) -> None:
        self.redis = redis
        self.model = model
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes
        self.local = LocalCache(local_bytes, ttl_s) if local_bytes and redis is not None else None
        self._pending: list[tuple[str, bytes]] = []  # writes of this event-loop turn
        self._flush: asyncio.Future | None = None
        self._writer: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    async def get_many(self, keys: Sequence[str]) -> tuple[list[dict[str, Any] | None], bool]:
        """The in-process copy first, then one MGET for the instances it lacks.

        Returns the results (None where missing) and whether Redis answered; when it did not,
        every instance it was asked about is a miss and counts as a cache error (not as a miss).
        """
        if not keys:
            return [], True
        if self.redis is None:
            return [None] * len(keys), True
        raw: list[bytes | None] = [None] * len(keys)
        if self.local is not None:
            raw = [self.local.get(key) for key in keys]
            local_hits = sum(v is not None for v in raw)
            metrics.CACHE_LOCAL_HITS.labels(self.model).inc(local_hits)
        ok = True
        remote = [i for i, value in enumerate(raw) if value is None]
        if remote:
            try:
                answers = await self.redis.call(lambda r: r.mget([keys[i] for i in remote]))
            except RedisUnavailable:
                metrics.CACHE_ERRORS.labels(self.model).inc(len(remote))
                answers, ok = [None] * len(remote), False
            for i, value in zip(remote, answers, strict=True):
                raw[i] = value
        found: list[dict[str, Any] | None] = []
        for value in raw:
            try:
                found.append(orjson.loads(value) if value is not None else None)
            except orjson.JSONDecodeError:  # a foreign or truncated value: treat as a miss
                found.append(None)
        if self.local is not None:  # copy what Redis answered (a local hit keeps its expiry)
            for i in remote:
                if found[i] is not None:
                    self.local.put(keys[i], raw[i])
        hits = sum(v is not None for v in found)
        metrics.CACHE_HITS.labels(self.model).inc(hits)
        if ok:  # instances Redis could not be asked about are errors, counted above
            metrics.CACHE_MISSES.labels(self.model).inc(len(found) - hits)
        return found, ok

    def store(self, items: Sequence[tuple[str, dict[str, Any]]]) -> asyncio.Future | None:
        """Queue results for Redis without waiting: write-behind. The in-process level has
        them at once; Redis gets them on the loop's next turn, in one pipeline round trip for
        every request that stores in this turn (the requests of one micro-batch).

        Returns the future of that write (True once Redis took it, False when it was
        unavailable), or None when nothing goes to Redis. The predictor does not await it: a
        response never waits for a cache write, which cost a Redis round trip (about 1 ms
        here) on every miss. A caller that must know the write landed awaits the future, through
        ``asyncio.shield``: every request of the turn shares it, so one cancelled waiter must
        not cancel it for the others.
        """
        if self.redis is None or not items:
            return None
        payload = [(k, orjson.dumps(v)) for k, v in items]
        payload = [(k, v) for k, v in payload if len(v) <= self.max_value_bytes]
        if not payload:
            return None
        if self.local is not None:
            for key, value in payload:
                self.local.put(key, value)
        if self.redis.circuit_open:  # the lookup already counted these instances as errors
            return None
        self._pending.extend(payload)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.create_future()
            # The task first runs on the loop's next turn, after every request of this turn
            # has queued its writes; kept referenced so that it is never collected mid-write.
            self._writer = loop.create_task(self._write_pending())
        return self._flush

    async def _write_pending(self) -> None:
        """Write every pending result in one pipeline; resolves the waiting requests' future
        with whether Redis took them."""
        payload, self._pending = self._pending, []
        future, self._flush = self._flush, None

        async def _write(client):
            pipe = client.pipeline(transaction=False)
            for key, value in payload:
                pipe.set(key, value, ex=self.ttl_s or None)
            return await pipe.execute()

        try:
            await self.redis.call(_write)
        except RedisUnavailable:
            metrics.CACHE_ERRORS.labels(self.model).inc(len(payload))
            future.set_result(False)
        except BaseException as exc:  # a bug or a cancelled loop: the waiters must not hang
            future.set_exception(exc)
            raise
        else:
            future.set_result(True)
