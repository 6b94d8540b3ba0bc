"""``POST /v1/areas:analyze``: the lane markings of an area given by WGS84 coordinates.

**Where it runs: in the serving process, next to the predict routes, not as a KServe
transformer.** A transformer is a second service in front of the predictor: every area would
cross the network twice (the mosaic to the predictor, the probabilities back; for 1 km^2 at
10 cm that is 10^8 pixels each way), the transformer would need its own Redis connection, API
keys and rate limits, and the predictor's v1/v2 protocol answers class masks, not the
per-pixel confidence the features carry. In process, the route reuses what the server already
has: the served lanes model's bundle and version (the cache key and the provenance of every
feature follow a model reload), the one Redis pool (cache and rate limits), the API keys and the
error rendering. With ``--forward_workers 0`` it runs the very network the predict route runs;
with forward worker processes (the default), whose answers are masks, it keeps one copy of the
served version's network in this process, loaded on the first area and replaced when the
served version changes.

A request goes: API key -> the route's rate-limit profile (``--areas-rate-limit``, default the
seeds' ``50/h`` per key; 429 with Retry-After) -> body (``area_request``: 400/413/422) -> the
imagery (``ImageryChain.plan``, the one lookup, ``area_imagery``: the catalogues of
``--imagery-catalogue`` first, then the providers of ``--imagery-providers FILE``, tile
providers filling what the local rasters leave; 404 naming every provider tried and why when
none covers the area, 422 naming the uncovered part when they cover it only in part, unless
``allow_partial``) -> the cache (Redis, keyed by the normalised area, the imagery's versions:
a raster's size and mtime, a tile provider's name, URL template and zoom; the model version,
classes and format) -> on a miss, the tiles fetched and ``roadvision.mapping.area.map_area``
run on one worker thread (the event loop keeps answering; areas queue behind each other rather
than share the CPU), under ``--areas-timeout-s`` (504; the mapping stops at its next block) ->
a GeoJSON FeatureCollection (``roadvision`` holds the request's facts: imagery used with its
provider and attribution, model, area, ``cached``) or a GeoPackage download. A tile provider
that fails (HTTP error, timeout) is skipped and the next asked; when none is left the answer
is the 404 / 422 above, naming it and its error, never a 500. After ``failure_threshold``
consecutive failures a tile provider's circuit opens (the chain's breaker): for ``cooldown_s``
the plan skips it at once, with the reason, instead of waiting on its timeouts; its failures and
circuit state are Prometheus figures (``roadvision_imagery_provider_failures_total``,
``roadvision_imagery_provider_circuit_open``). A request with ``date`` reads only imagery
acquired on or before it: a tile provider without a ``date:`` in its config is skipped, one
with ``{date}`` in its URL template is asked for that date.

Without imagery configured, or without a lanes model, the route answers 404 saying what to
configure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from roadvision.errors import UserError

from . import metrics
from .area_imagery import OpenedImagery, build_chain, export_circuits, opened_imagery
from .auth import RateLimiter, parse_rate
from .errors import DeadlineExceeded, NotReady, ServingError, Unprocessable
from .redis_client import RedisUnavailable, ResilientRedis

if TYPE_CHECKING:  # the geo libraries load with the first area, not with the server
    from roadvision.geo.providers import ImageryPlan, ImagerySource

    from .area_request import AreaRequest

log = logging.getLogger("roadvision.serving.areas")

__all__ = ["AREAS_PATH", "AreasConfig", "AreaCache", "AreaRoutes"]

AREAS_PATH = "/v1/areas:analyze"
CACHE_PREFIX = "rv:area:v1:"


class NotFound(ServingError):
    """404: nothing to answer with (no imagery there, no lanes model, no catalogue)."""

    status = 404
    code = "not_found"


class ImageryUnavailable(ServingError):
    """503: a catalogued raster could not be read (moved, truncated); the log has which."""

    status = 503
    code = "imagery_unavailable"


@dataclass
class AreasConfig:
    """The areas route's settings; each has an environment variable (``from_env``)."""

    catalogues: tuple[str, ...] = ()  # ROADVISION_IMAGERY_CATALOGUES (os.pathsep-separated)
    providers: str | None = None  # ROADVISION_IMAGERY_PROVIDERS: a provider chain file, after
    # the catalogues (the format `roadvision imagery providers` reads)
    max_area_km2: float = 4.0  # ROADVISION_MAX_AREA_KM2; larger areas: 413
    rate_limit: str = "50/h"  # ROADVISION_AREAS_RATE_LIMIT; per key id, "off" = none
    cache_ttl_s: int = 86400  # ROADVISION_AREAS_CACHE_TTL_S; 0 = until Redis evicts
    cache_max_bytes: int = 32 << 20  # ROADVISION_AREAS_CACHE_MAX_BYTES; larger not cached
    timeout_s: float = 300.0  # ROADVISION_AREAS_TIMEOUT_S; one area's deadline (504)
    block: int = 1024  # ROADVISION_AREAS_BLOCK; block side in pixels (memory bound)

    def __post_init__(self) -> None:
        self.catalogues = tuple(str(c) for c in self.catalogues if str(c))
        if not self.max_area_km2 > 0:
            raise UserError(f"max area must be > 0 km^2, got {self.max_area_km2}")
        if not self.timeout_s > 0:
            raise UserError(f"areas timeout must be > 0 s, got {self.timeout_s}")
        if self.cache_ttl_s < 0:
            raise UserError(f"areas cache TTL must be >= 0, got {self.cache_ttl_s}")
        if self.block < 128:
            raise UserError(f"areas block must be >= 128 px, got {self.block}")
        parse_rate(self.rate_limit, "--areas-rate-limit")
        from roadvision.geo.catalogue import read_catalogue
        from roadvision.geo.providers import load_config

        self.providers = str(self.providers) if self.providers else None
        local = list(self.catalogues)
        if self.providers:  # a bad chain file stops the start, in one line
            local += [c.catalogue for c in load_config(self.providers)
                      if c.kind == "catalogue" and c.enabled and c.catalogue
                      and not c.catalogue.startswith("s3://")]
        for path in local:  # a missing or foreign file stops the start, in one line
            read_catalogue(path)

    @property
    def enabled(self) -> bool:
        """Whether any imagery is configured (else the route answers 404)."""
        return bool(self.catalogues or self.providers)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> AreasConfig:
        """Defaults < environment < explicit overrides (None overrides are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_VARS[f.name], "")
            if raw == "":
                continue
            try:
                values[f.name] = (tuple(raw.split(os.pathsep)) if f.name == "catalogues"
                                  else _TYPES[f.name](raw))
            except ValueError:
                raise UserError(f"{ENV_VARS[f.name]}={raw!r} is not "
                                f"{'a number' if _TYPES[f.name] is float else 'an integer'}"
                                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


ENV_VARS = {"catalogues": "ROADVISION_IMAGERY_CATALOGUES",
            # the same variable `roadvision imagery providers` reads: one chain file for both
            "providers": "ROADVISION_IMAGERY_PROVIDERS",
            "max_area_km2": "ROADVISION_MAX_AREA_KM2",
            "rate_limit": "ROADVISION_AREAS_RATE_LIMIT",
            "cache_ttl_s": "ROADVISION_AREAS_CACHE_TTL_S",
            "cache_max_bytes": "ROADVISION_AREAS_CACHE_MAX_BYTES",
            "timeout_s": "ROADVISION_AREAS_TIMEOUT_S", "block": "ROADVISION_AREAS_BLOCK"}
_TYPES = {"providers": str, "max_area_km2": float, "rate_limit": str, "cache_ttl_s": int,
          "cache_max_bytes": int, "timeout_s": float, "block": int}


# --- cache ---------------------------------------------------------------------------------

def _imagery_key(source: ImagerySource) -> list[Any]:
    """What identifies a source's pixels."""
    if source.kind == "catalogue":  # the raster's size and mtime: re-flown imagery is new
        return ["catalogue", source.imagery_id, source.href, source.version]
    # Tiles have no mtime (and asking for an ETag would cost a fetch per request): their
    # pixels are named by the provider, its URL template (never the key's value), the zoom
    # read and the layer's date (a new `date:` or `default_date` in the config is new imagery);
    # a provider re-rendering under the same template is seen after the cache TTL.
    return [source.kind, source.provider, source.href, source.zoom, source.date]


def area_cache_key(request: AreaRequest, sources: list[ImagerySource], model_version: str,
                   gsd: float, classes: tuple[str, ...] | None) -> str:
    """Everything that determines an answer, each part length-prefixed (parts cannot blur)."""
    digest = hashlib.sha256()
    imagery = [_imagery_key(s) for s in sources]
    for part in (request.area_digest(), orjson.dumps(imagery), model_version.encode(),
                 orjson.dumps([gsd, list(classes or []), request.format, request.date,
                               request.allow_partial])):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return CACHE_PREFIX + digest.hexdigest()


class AreaCache:
    """Answers by key in Redis (bytes); Redis trouble is a miss, never a failed request."""

    def __init__(self, redis: ResilientRedis | None, ttl_s: int, max_bytes: int,
                 timeout_s: float = 1.0) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s  # answers are megabytes, not the predict cache's kilobytes

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    async def get(self, key: str, model: str) -> tuple[bytes | None, str]:
        """(value or None, state: hit, miss, error or off)."""
        if self.redis is None:
            return None, "off"
        try:
            value = await self.redis.call(lambda r: r.get(key), timeout_s=self.timeout_s)
        except RedisUnavailable:
            metrics.CACHE_ERRORS.labels(model).inc()
            return None, "error"
        (metrics.CACHE_HITS if value is not None else metrics.CACHE_MISSES).labels(model).inc()
        return value, "hit" if value is not None else "miss"

    async def set(self, key: str, value: bytes, model: str) -> bool:
        if self.redis is None or len(value) > self.max_bytes or self.redis.circuit_open:
            return False
        try:
            await self.redis.call(lambda r: r.set(key, value, ex=self.ttl_s or None),
                                  timeout_s=self.timeout_s)
        except RedisUnavailable:
            metrics.CACHE_ERRORS.labels(model).inc()
            return False
        return True


# --- the route -----------------------------------------------------------------------------

@dataclass
class _Served:
    """The served lanes model an area is mapped with, as this request sees it."""

    name: str
    version: str
    source: str  # the bundle folder
    identity: dict[str, Any]
    gsd: float
    classes: list[str]
    runner: Any


class AreaRoutes:
    """The areas endpoint. ``config`` None (or no imagery): the route answers 404."""

    def __init__(self, dataplane, guard, config: AreasConfig | None) -> None:
        self.dataplane = dataplane
        self.guard = guard
        self.config = config or AreasConfig()
        self.chain = (build_chain(self.config.catalogues, self.config.providers)
                      if self.config.enabled else None)
        limit, window = parse_rate(self.config.rate_limit)
        self.limiter = RateLimiter(guard.redis, limit, window_s=window, name="areas",
                                   timeout_s=guard.config.ratelimit_timeout_s,
                                   on_outage=guard.config.ratelimit_on_outage)
        self.cache = AreaCache(guard.redis, self.config.cache_ttl_s,
                               self.config.cache_max_bytes)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="areas")
        self._nets: dict[str, Any] = {}  # version -> this process's copy of the network
        self._gsd: dict[str, float] = {}  # version -> the bundle's GSD
        if self.chain is not None:
            # the geo stack (rasterio, shapely, scikit-image) loads at start, before the
            # server reports ready, not during the first area
            import roadvision.mapping.area  # noqa: F401
            import roadvision.serving.area_request  # noqa: F401

    # --- which model ---------------------------------------------------------------------

    def _lanes_models(self) -> dict[str, Any]:
        models = self.dataplane.model_registry.get_models()
        return {name: m for name, m in models.items()
                if getattr(getattr(m, "loaded", None), "task", None) == "lanes"}

    def _choose(self, lanes: dict[str, Any], asked: str | None) -> _Served:
        if asked is not None:
            if asked not in lanes:
                raise NotFound(f"model {asked!r} is not a served lanes model; lanes models: "
                               f"{sorted(lanes)}", code="model_not_found")
            name = asked
        elif len(lanes) == 1:
            name = next(iter(lanes))
        else:
            raise Unprocessable(f"several lanes models are served ({sorted(lanes)}): name one "
                                "with \"model\"", code="model_ambiguous", reason="invalid_input")
        model = lanes[name]
        loaded = model.loaded
        if loaded is None or not model.ready:
            raise NotReady(f"model {name!r} is not ready (loading or failed to load)")
        return _Served(name, loaded.version, loaded.source, model.identity(),
                       self._bundle_gsd(loaded.version, loaded.source), list(loaded.classes),
                       loaded.batcher.runner)

    def _bundle_gsd(self, version: str, source: str) -> float:
        gsd = self._gsd.get(version)
        if gsd is None:
            from roadvision.geo.gsd import model_gsd
            from roadvision.models.bundle import read_bundle_config

            gsd, assumed = model_gsd(read_bundle_config(source))
            if assumed:
                log.warning("model bundle %s records no training GSD; areas are mapped at "
                            "%s m/px", source, gsd)
            self._gsd = {version: gsd}
        return gsd

    def _net(self, served: _Served) -> Any:
        """The network to map with (in the worker thread): the batcher's own when it runs in
        this process, else this process's copy of the served version."""
        net = getattr(getattr(served.runner, "forward", None), "net", None)
        if net is not None:
            return net
        net = self._nets.get(served.version)
        if net is None:
            from roadvision.runtime.inference import load_for_inference

            net = load_for_inference(served.source, device=self.guard.config.torch_device())
            self._nets = {served.version: net}  # one version: a reload replaces the old copy
        return net

    # --- the request ---------------------------------------------------------------------

    async def analyze(self, request: Request) -> Response:
        from .area_request import FORMATS, check_classes, parse_area_request
        from .server import read_body  # server.py imports this module

        start = time.perf_counter()
        guard = self.guard
        headers = dict(request.headers)
        key_id = guard.auth.key_id(headers, request.client.host if request.client else None)
        if self.chain is None:
            raise NotFound("analysis by coordinates needs imagery: start the server with "
                           "--imagery-catalogue CATALOGUE.json (from roadvision imagery index) "
                           "or --imagery-providers FILE (a provider chain)",
                           code="areas_not_configured")
        lanes = self._lanes_models()
        if not lanes:
            raise NotFound("analysis by coordinates needs a lanes model; this server serves "
                           f"{sorted(self.dataplane.model_registry.get_models())}: add "
                           "--model lanes=URI", code="areas_not_configured")
        await self.limiter.check(key_id, "areas")
        body = await read_body(request, guard.config.max_body_bytes)
        asked = parse_area_request(body, self.config.max_area_km2)
        served = self._choose(lanes, asked.model)
        classes = check_classes(asked, served.classes)
        plan = self.chain.plan(asked.area, served.gsd, asked.date)
        export_circuits(self.chain)  # an open circuit may have cooled down to half-open
        uncovered: ServingError | None = None
        try:
            self._check_coverage(asked, plan.coverage, plan)
        except (NotFound, Unprocessable) as exc:
            if not plan.held:
                raise
            uncovered = exc  # unless an answer read from a held provider is cached
        # keyed on the plan, before a tile is fetched: a hit touches no provider. A tile
        # provider whose circuit is open is out of the plan, but what was read from it before
        # still answers: its keys are looked up after the plan's own (the cache rides out the
        # provider's outage, as it did before the breaker skipped it)
        candidates = ([] if uncovered else [plan.sources()]) + [
            plan.sources(held) for held in plan.held]
        cached, state, sources = None, "off", plan.sources()
        for sources in candidates:
            key = area_cache_key(asked, sources, served.version, served.gsd, classes)
            cached, state = await self.cache.get(key, served.name)
            if cached is not None or state in ("error", "off"):
                break
        if cached is None and uncovered is not None:
            raise uncovered
        if cached is not None:
            content = cached
            if asked.format == "geojson":
                doc = orjson.loads(cached)
                doc["roadvision"]["cached"] = True
                content = orjson.dumps(doc)
        else:
            content, sources = await self._compute(asked, served, classes, plan)
            # stored under what was read: when the preferred tile provider failed and the next
            # answered, the key names that one (the preferred is asked again next time)
            key = area_cache_key(asked, sources, served.version, served.gsd, classes)
            if state != "error":
                await self.cache.set(key, content, served.name)
        response_headers = {
            "x-roadvision-model-version": served.version, "x-roadvision-cache": state,
            "x-roadvision-imagery": ",".join(s.imagery_id for s in sources),
            "x-roadvision-area-km2": f"{asked.area_km2:.6f}"}
        if asked.format == "gpkg":
            response_headers["content-disposition"] = 'attachment; filename="lane_markings.gpkg"'
        metrics.LATENCY.labels(served.name, "areas").observe(time.perf_counter() - start)
        # The body is JSON or GeoPackage bytes already (as cached): sent as they are.
        return Response(content, media_type=FORMATS[asked.format], headers=response_headers)

    @staticmethod
    def _check_coverage(asked: AreaRequest, coverage: float, plan: ImageryPlan,
                        skipped: Sequence[tuple[str, str]] = (), has_imagery: bool = True
                        ) -> None:
        """404 when no provider has imagery for the area, 422 when it covers only part of it
        (unless allow_partial); both name each provider tried and why it could not answer."""
        from .area_request import area_km2

        where = f"the area {list(asked.bbox)}"
        if asked.date is not None:
            where += f" (imagery acquired on or before {asked.date})"
        tried = [*plan.tried, *skipped]
        detail = "; ".join(f"{name}: {why}" for name, why in tried)
        if not has_imagery or (not plan.local and not plan.tiles):
            raise NotFound(f"no imagery of this server's providers covers {where} ("
                           f"{detail or 'no enabled provider'})", code="no_imagery")
        if coverage < 0.999 and not asked.allow_partial:
            gap = plan.uncovered
            raise Unprocessable(
                f"the imagery covers {coverage:.1%} of {where}; uncovered: "
                f"{area_km2(gap):.6f} km^2 within bbox "
                f"{[round(v, 6) for v in gap.bounds]}: ask for the covered part, or pass "
                "\"allow_partial\": true" + (f" (providers tried: {detail})" if detail else ""),
                code="area_not_covered", reason="area_not_covered")

    async def _compute(self, asked: AreaRequest, served: _Served,
                       classes: tuple[str, ...] | None, plan: ImageryPlan
                       ) -> tuple[bytes, list[ImagerySource]]:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._map, asked, served, classes, plan,
                                      stop)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await future
        except TimeoutError:
            stop.set()  # the mapping stops at its next block; a queued one never starts
            raise DeadlineExceeded(f"the area took longer than this server's areas deadline "
                                   f"of {self.config.timeout_s:g} s; ask for a smaller area",
                                   reason="deadline") from None

    def _map(self, asked: AreaRequest, served: _Served, classes: tuple[str, ...] | None,
             plan: ImageryPlan, stop: threading.Event) -> tuple[bytes, list[ImagerySource]]:
        """Fetch the planned tiles, map the area and render the answer, with the sources
        read (runs on the areas thread)."""
        with opened_imagery(self.chain, plan, stop) as opened:
            if plan.tiles and opened.tiles is None:  # every tile provider failed
                self._check_coverage(asked, plan.local_coverage, plan, opened.skipped,
                                     has_imagery=bool(plan.local))
            coverage = plan.coverage if opened.tiles is not None else plan.local_coverage
            return self._render(asked, served, classes, opened, coverage, stop), opened.used

    def _render(self, asked: AreaRequest, served: _Served, classes: tuple[str, ...] | None,
                opened: OpenedImagery, coverage: float, stop: threading.Event) -> bytes:
        from shapely.geometry import mapping

        from roadvision.geo.features import FEATURE_FIELDS
        from roadvision.mapping.area import AreaConfig, feature_collection, gpkg_bytes, map_area
        from roadvision.mapping.batch import AREA_ONLY_FIELDS, PROVENANCE_FIELDS

        net = self._net(served)
        provenance = {"model": served.name, "model_version": served.version}
        try:
            result = map_area(net, opened.rasters, asked.area, AreaConfig(
                gsd=served.gsd, classes=classes, block=self.config.block), provenance,
                cancelled=stop.is_set)
        except UserError as exc:  # a catalogued raster that no longer reads
            log.error("area %s: %s", list(asked.bbox), exc)
            raise ImageryUnavailable("a catalogued raster for this area could not be read; "
                                     "the server log has which") from None
        by_id = {s.imagery_id: s for s in opened.used}
        imagery = [{**i, "provider": by_id[i["id"]].provider, "kind": by_id[i["id"]].kind,
                    "source": by_id[i["id"]].attribution or by_id[i["id"]].provider}
                   if i["id"] in by_id else i for i in result.imagery]
        fields = [*FEATURE_FIELDS, *AREA_ONLY_FIELDS, *PROVENANCE_FIELDS]  # as batch writes
        if asked.format == "gpkg":
            return gpkg_bytes(result.features, result.crs, fields)
        facts = {
            "model": served.identity, "model_version": served.version,
            "imagery": imagery, "area_km2": round(asked.area_km2, 6),
            "coverage": round(coverage, 4), "gsd_m": served.gsd,
            "classes": list(classes) if classes else served.classes[1:],
            "date": asked.date, "crs_source": result.crs.to_string(),
            "area": mapping(asked.area), "seconds": round(result.seconds, 3),
            "cached": False,
        }
        return orjson.dumps(feature_collection(result.features, result.crs, fields,
                                               {"roadvision": facts}))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
