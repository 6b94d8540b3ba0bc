"""Redis response cache keyed by everything that determines a prediction.

Key = sha256 over (model version, task, TTA settings, image bytes, canonical metadata JSON).
The model version is the bundle's weight hash, so a new version can never read an old
version's answers; equal inputs with equivalent metadata spellings ("Sunny" vs "clear") share an
entry because metadata is canonicalised (normalised vocabulary, sorted keys) before hashing.

Values are the JSON of one instance's result, without the per-response fields (``cached``).
Redis trouble never fails a request: reads return misses and writes are skipped, both counted
in ``roadvision_cache_errors_total``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import orjson

from . import metrics
from .redis_client import RedisUnavailable, ResilientRedis

KEY_PREFIX = "rv:pred:v1:"


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, floats as Python prints them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def cache_key(
    model_version: str, task: str, tta: str, image: bytes, metadata: dict[str, Any] | None
) -> str:
    """The Redis key for one instance; each part is length-prefixed so parts cannot collide."""
    digest = hashlib.sha256()
    for part in (
        model_version.encode(), task.encode(), canonical_json({"tta": tta}),
        image, canonical_json(metadata or {}),
    ):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return KEY_PREFIX + digest.hexdigest()


class PredictionCache:
    """Get/set instance results in Redis; ``redis=None`` disables caching (no errors counted).

    Args:
        redis: the shared resilient client, or None.
        model: ``model`` label for the metrics.
        ttl_s: expiry of each entry; 0 keeps entries until Redis evicts them.
        max_value_bytes: larger results (big lane masks) are not cached.
    """

    def __init__(
        self, redis: ResilientRedis | None, model: str, *, ttl_s: int = 3600,
        max_value_bytes: int = 1 << 20,
    ) -> None:
        self.redis = redis
        self.model = model
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    async def get_many(self, keys: Sequence[str]) -> tuple[list[dict[str, Any] | None], bool]:
        """One MGET for all instances of a request.

        Returns the results (None where missing) and whether Redis answered; when it did not,
        every instance is a miss and counts as a cache error (not as a miss).
        """
        if not keys:
            return [], True
        if self.redis is None:
            return [None] * len(keys), True
        try:
            raw = await self.redis.call(lambda r: r.mget(list(keys)))
        except RedisUnavailable:
            metrics.CACHE_ERRORS.labels(self.model).inc(len(keys))
            return [None] * len(keys), False
        found: list[dict[str, Any] | None] = []
        for value in raw:
            try:
                found.append(orjson.loads(value) if value is not None else None)
            except orjson.JSONDecodeError:  # a foreign or truncated value: treat as a miss
                found.append(None)
        hits = sum(v is not None for v in found)
        metrics.CACHE_HITS.labels(self.model).inc(hits)
        metrics.CACHE_MISSES.labels(self.model).inc(len(found) - hits)
        return found, True

    async def set_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store results (one pipeline round trip); returns how many were stored."""
        if self.redis is None or not items:
            return 0
        if self.redis.circuit_open:  # the lookup already counted these instances as errors
            return 0
        payload = [(k, orjson.dumps(v)) for k, v in items]
        payload = [(k, v) for k, v in payload if len(v) <= self.max_value_bytes]
        if not payload:
            return 0

        async def _write(client):
            pipe = client.pipeline(transaction=False)
            for key, value in payload:
                pipe.set(key, value, ex=self.ttl_s or None)
            return await pipe.execute()

        try:
            await self.redis.call(_write)
        except RedisUnavailable:
            metrics.CACHE_ERRORS.labels(self.model).inc(len(payload))
            return 0
        return len(payload)
