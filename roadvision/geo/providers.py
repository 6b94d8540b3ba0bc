"""The imagery provider chain: where the pixels for an area come from, in order.

Local catalogues first (``roadvision.geo.catalogue``: GeoTIFFs / COGs in a folder or under an
``s3://`` prefix), then XYZ / WMTS tile providers configured by URL template
(``roadvision.geo.tiles``). The first provider that covers the whole area answers; a provider
that does not (outside its coverage, a 404, a timeout, an HTML page instead of a tile, its API
key unset) is skipped with the reason, and when none covers the area the error names every
provider tried and why it failed.

API (all of it)::

    chain = ImageryChain.from_config("providers.yaml")   # or None: $ROADVISION_IMAGERY_PROVIDERS
    chain = ImageryChain.from_config(None, catalogues=["imagery/catalogue.json"])  # local only
    chain.find(bbox, date=None) -> list[ImagerySource]   # what covers the WGS84 bbox; no pixels
    chain.plan(area, gsd_m, date=None) -> ImageryPlan    # THE lookup: which sources, no pixels
    chain.fetch_tiles(source, bbox) -> (pixels, transform)  # a planned tile source's pixels
    chain.read(bbox, gsd_m, date=None, crs=None) -> GeoImage  # plan + pixels, mosaicked
    chain.describe() -> list[dict]       # one row per provider (`roadvision imagery providers`)
    chain.circuits() -> dict[str, CircuitState]  # each tile provider's circuit breaker, by name

``plan`` is the one lookup (``read`` and the areas route, ``serving/areas.py``, both go through
it): the rasters of every local catalogue together, finest GSD first and then the newest, each
taken when it covers some of what the ones before it left; then, for the part they leave
uncovered, the tile providers in chain order (coverage, key, date and circuit checked, zoom
chosen for the GSD; no tile fetched). The first tile provider is the one asked; one that fails
when its tiles are fetched (``ProviderError``: HTTP error, timeout, not an image) gives way to
the next.

``bbox`` is (min_lon, min_lat, max_lon, max_lat) in WGS84 (``area``: a WGS84 polygon or a
bbox); ``date`` ("YYYY-MM-DD") asks for imagery acquired on or before it: catalogue rasters
acquired after it are left out; a tile provider with a fixed ``date:`` (its layer's vintage) is
kept when that date is on or before it and skipped when after; one with ``{date}`` in its URL
template (a time-dimension layer) is kept and the date passed through in the URL; one with
neither is skipped ("its tiles carry no acquisition date"): a user asking for 2019 never gets
today's tiles unawares. Without ``date`` every provider matches, and a ``{date}`` template is
filled with its ``default_date``. ``ImagerySource.date`` (the ``imagery_date`` features carry)
is the raster's date, a tile layer's ``date:``, or the date a ``{date}`` template was filled
with; None only where nothing says (an undated tile layer). ``gsd_m`` is the ground metres per
pixel wanted (the model's, ``roadvision.geo.gsd``). ``read`` answers a
:class:`~roadvision.geo.raster.GeoImage` (RGB pixels, transform, CRS, ground GSD, a
``covered`` mask and the :class:`ImagerySource` records used) in ``crs``: by default the
first local raster's CRS, or EPSG:3857 (Web Mercator) for tiles; pass a metric CRS
(``crs.utm_crs``) to measure lengths in metres whatever the source.
A catalogue file that changes is re-read (the last good version kept while it is being
rewritten). ``ImagerySource.properties()`` gives the ``imagery_id`` / ``imagery_source``
(attribution) / ``imagery_date`` that features carry.
Nothing covers the area: :class:`NoImageryError`, a ``UserError``.

**Circuit breaker, per tile provider** (in-process, thread-safe). A fetch that fails for the
provider's sake (unreachable, timed out, HTTP 5xx / 401 / 403 / 408 / 429, not an image; not a
404 for a tile that is not there, nor an area needing too many tiles) counts; a fetch that
succeeds resets the count. After ``failure_threshold`` consecutive failures the circuit is
*open* for ``cooldown_s``: ``plan`` (and ``find``) skips the provider at once, with a reason
such as "circuit open after 3 consecutive failures (last: HTTP 503 Service Unavailable);
retried in 41 s", so no request waits ``timeout_s`` per tile on a provider known to be down.
After the cooldown it is *half-open*: the next fetch is a trial (other requests skip the
provider while it runs); success closes the circuit, failure opens it for another cooldown.
A provider skipped for its open circuit is named in ``ImageryPlan.held``: not asked, but an
answer a cache holds from its tiles still stands for it (the areas route looks such keys up).
``circuits()`` gives each tile provider's :class:`CircuitState` (the serving process exports
it to Prometheus), ``describe()`` shows it. The clock is ``time.monotonic`` unless the chain is
given another (``ImageryChain(..., clock=...)``, ``from_config(..., clock=...)``).

Config (YAML or JSON; ``--providers FILE`` or ``$ROADVISION_IMAGERY_PROVIDERS``)::

    providers:
      - name: local
        kind: catalogue             # catalogue | xyz | wmts
        catalogue: imagery.json     # path (relative to this file) or s3://bucket/key.json
      - name: esri
        kind: xyz
        url: https://tiles.example.com/{z}/{y}/{x}.jpg?token={api_key}
        api_key_env: TILES_KEY      # the key is read from this environment variable only
        attribution: "Imagery (c) Example"
        min_zoom: 0
        max_zoom: 20
        enabled: true               # tile providers are off unless enabled here
        date: "2024-05-01"          # the layer's acquisition date (its vintage); optional
        failure_threshold: 3        # consecutive fetch failures that open its circuit (>= 1)
        cooldown_s: 60              # seconds the circuit stays open before a trial fetch
      - name: archive
        kind: wmts
        url: https://wmts.example.com/ortho/{date}/{TileMatrix}/{TileRow}/{TileCol}.jpg
        default_date: "2024-05-01"  # required with {date}: what an undated request gets
        enabled: true

Other keys: ``bounds`` (WGS84 coverage of a tile provider), ``tile_size``, ``matrix_prefix``
(WMTS tile matrix identifiers ``<prefix><zoom>``), ``timeout_s`` (per tile), ``max_tiles``,
``max_tile_bytes``, ``headers``; ``endpoint_url`` for a catalogue on S3. A date is
"YYYY-MM-DD" (quoted or not in YAML); ``date`` and ``default_date`` are for tile providers only
(a catalogue's rasters carry their own dates), and a ``{date}`` template takes
``default_date``, not ``date``.

No provider exists unless a config or a catalogue names it; external tile providers are off
until a config says ``enabled: true``. API keys live only in environment variables and never
appear in a message, a table or a log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS as RasterioCRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from shapely import box, union_all
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry

from roadvision.errors import UserError

from .breaker import Breaker, CircuitState
from .catalogue import find_imagery, raster_uri, read_catalogue
from .crs import parse_bbox
from .mosaic import mosaic_array, mosaic_rasters
from .raster import GeoImage
from .s3 import is_s3, s3_env
from .tiles import TileError, TileSource, ground_resolution, stitch, zoom_for_gsd

__all__ = ["ENV_VAR", "KINDS", "ImagerySource", "ImageryPlan", "ProviderConfig",
           "CircuitState", "NoImageryError", "ProviderError", "ImageryChain", "load_config"]

log = logging.getLogger("roadvision.geo.providers")

#: The environment variable naming the provider config when ``--providers`` is not given.
ENV_VAR = "ROADVISION_IMAGERY_PROVIDERS"
KINDS = ("catalogue", "xyz", "wmts")
_TEMPLATE_FIELDS = {"xyz": ("{z}", "{x}", "{y}"),
                    "wmts": ("{TileMatrix}", "{TileRow}", "{TileCol}")}
#: A catalogue must cover at least this share of the area to answer (footprint edges are
#: densified polygons, so an exact cover can miss by a hair).
_MIN_COVER = 0.995
#: A sliver below this share of the area is no gap (float noise of footprint unions).
_SLIVER = 1e-9
#: Tiles are asked for what the local rasters leave only above this share of the area: the
#: seams between densified footprints of edge-to-edge rasters are not worth a tile fetch.
_GAP = 1e-4
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ImagerySource:
    """One piece of imagery a provider has for an area."""

    provider: str  # the provider's name in the chain
    kind: str  # catalogue | xyz | wmts
    imagery_id: str  # catalogue entry id, or "<provider>/z<zoom>" for tiles
    attribution: str  # the provider's attribution string, passed on to features
    date: str | None  # acquisition date (tiles: the layer's, or the {date} asked; None: unknown)
    gsd_m: float | None  # ground metres per pixel of the source
    href: str  # the raster's path / URI, or the tile URL template (never with the key)
    version: str | None = None  # what changes when the pixels change (size and mtime), or None
    zoom: int | None = None  # tiles: the zoom level read

    def properties(self) -> dict[str, str | None]:
        """What a feature made from these pixels carries."""
        return {"imagery_id": self.imagery_id, "imagery_source": self.attribution or self.provider,
                "imagery_date": self.date}


class NoImageryError(UserError):
    """No provider of the chain covers the area; ``tried`` holds (provider, reason) pairs."""

    def __init__(self, bbox: Sequence[float], tried: list[tuple[str, str]]):
        self.bbox = tuple(bbox)
        self.tried = tried
        detail = "; ".join(f"{name}: {why}" for name, why in tried) or "no provider configured"
        super().__init__(f"no imagery covers the area {[round(v, 6) for v in bbox]} ({detail})")


class ProviderError(UserError):
    """A planned provider failed when asked for its pixels (a tile provider's HTTP error,
    timeout, non-image answer, or its circuit open); the caller goes on with the next one."""

    def __init__(self, provider: str, reason: str, fault: bool = False):
        self.provider = provider  # "<name> (<kind>)", as NoImageryError.tried names it
        self.reason = reason
        self.fault = fault  # a fetch failed for the provider's sake (counted by its breaker)
        super().__init__(f"{provider}: {reason}")


@dataclass(frozen=True)
class ImageryPlan:
    """What the chain would read for an area (:meth:`ImageryChain.plan`), no pixel fetched."""

    local: tuple[ImagerySource, ...]  # catalogue rasters, preferred first
    tiles: tuple[ImagerySource, ...]  # tile providers for the rest, preferred first
    local_coverage: float  # share of the area the local rasters cover, 0..1
    uncovered: BaseGeometry  # WGS84: what the local rasters leave (empty: nothing)
    tried: tuple[tuple[str, str], ...]  # (provider, why) of each provider that cannot answer
    # tile providers left out only because their circuit is open, preferred first: not asked,
    # but an answer cached from their tiles before still stands for them (serving/areas.py)
    held: tuple[ImagerySource, ...] = ()

    @property
    def coverage(self) -> float:
        """Share of the area covered: a tile provider's coverage is its bounds (checked to hold
        the uncovered part), so with one the whole area is covered."""
        return 1.0 if self.tiles else self.local_coverage

    @property
    def tile_bbox(self) -> tuple[float, float, float, float] | None:
        """The WGS84 bbox the tiles are asked for: the uncovered part's (None: none needed)."""
        return None if self.uncovered.is_empty else tuple(self.uncovered.bounds)

    def sources(self, tile: ImagerySource | None = None) -> list[ImagerySource]:
        """The sources an answer reads: the local rasters, then ``tile`` (default the
        preferred tile provider)."""
        tile = tile or (self.tiles[0] if self.tiles else None)
        return [*self.local, *([tile] if tile is not None else [])]


class _Skip(Exception):
    """A provider cannot answer this area; the message says why."""


class _Open(_Skip):
    """A tile provider that would answer but for its open circuit: ``source`` is what it
    would have been asked for."""

    def __init__(self, reason: str, source: ImagerySource):
        super().__init__(reason)
        self.source = source


@dataclass(frozen=True)
class ProviderConfig:
    """One provider of the chain, as the config file gives it."""

    name: str
    kind: str  # catalogue | xyz | wmts
    enabled: bool  # default: True for catalogues, False for tile providers
    catalogue: str | None = None  # catalogue: the JSON file (path or s3:// URI)
    endpoint_url: str | None = None  # catalogue on S3: the endpoint (else AWS_ENDPOINT_URL)
    url: str | None = None  # tiles: the URL template
    attribution: str = ""
    min_zoom: int = 0
    max_zoom: int = 19
    tile_size: int = 256
    bounds: tuple[float, float, float, float] | None = None  # tiles: WGS84 coverage
    api_key_env: str | None = None  # tiles: the environment variable holding the key
    matrix_prefix: str = ""  # WMTS: tile matrix identifiers "<prefix><zoom>"
    timeout_s: float = 10.0  # per tile request
    max_tile_bytes: int = 4 << 20
    max_tiles: int = 256  # most tiles one read may fetch
    headers: dict[str, str] = field(default_factory=dict)  # extra request headers (no keys)
    date: str | None = None  # tiles: the layer's acquisition date, "YYYY-MM-DD"
    default_date: str | None = None  # tiles with {date} in the URL: the date of an undated ask
    failure_threshold: int = 3  # tiles: consecutive fetch failures that open the circuit
    cooldown_s: float = 60.0  # tiles: how long the circuit stays open before a trial fetch

    def key_source(self) -> str:
        """Where the API key comes from, for the table (never the key itself)."""
        if not self.api_key_env:
            return "-"
        state = "set" if os.environ.get(self.api_key_env) else "unset"
        return f"${self.api_key_env} ({state})"

    @property
    def dated_template(self) -> bool:
        """Whether the URL template takes the date asked for (a time-dimension layer)."""
        return "{date}" in (self.url or "")


def _check_date(value: Any, where: str, key: str) -> str:
    """``value`` as "YYYY-MM-DD" (YAML reads an unquoted date as a ``date``), or one line."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise UserError(f"{where}: {key} {value!r} is not a date (YYYY-MM-DD)")


def _check_provider(raw: Any, i: int, base: Path | None) -> ProviderConfig:
    where = f"providers[{i}]"
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: expected a mapping with name and kind")
    known = {f.name for f in fields(ProviderConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: 'name' must be a non-empty string")
    where = f"provider {name!r}"
    if kind not in KINDS:
        raise UserError(f"{where}: kind {kind!r} is not one of {list(KINDS)}")
    values = dict(raw)
    values.setdefault("enabled", kind == "catalogue")
    if not isinstance(values["enabled"], bool):
        raise UserError(f"{where}: enabled must be true or false")
    if kind == "catalogue":
        cat = values.get("catalogue")
        if not isinstance(cat, str) or not cat:
            raise UserError(f"{where}: a catalogue provider needs 'catalogue' (a catalogue "
                            "JSON from roadvision imagery index)")
        if not is_s3(cat) and base is not None and not Path(cat).is_absolute():
            values["catalogue"] = str(base / cat)
        for key in ("date", "default_date"):
            if values.get(key) is not None:
                raise UserError(f"{where}: {key} is for tile providers (a catalogue's rasters "
                                "carry their own acquisition dates)")
    else:
        url = values.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise UserError(f"{where}: 'url' must be an http(s) URL template")
        missing = [t for t in _TEMPLATE_FIELDS[kind] if t not in url]
        if missing:
            raise UserError(f"{where}: the {kind} URL template lacks {', '.join(missing)}")
        if "{api_key}" in url and not values.get("api_key_env"):
            raise UserError(f"{where}: the URL has {{api_key}}; name the environment variable "
                            "holding it with api_key_env")
        try:
            TileSource(url).url_for(0, 0, 0, key="")
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(f"{where}: URL template has an unknown field {exc}") from None
        for key in ("date", "default_date"):
            if values.get(key) is not None:
                values[key] = _check_date(values[key], where, key)
        if "{date}" in url:
            if values.get("date") is not None:
                raise UserError(f"{where}: the URL template has {{date}} (the date asked for "
                                "is passed through): give default_date, not date")
            if values.get("default_date") is None:
                raise UserError(f"{where}: the URL template has {{date}}: set default_date "
                                "(YYYY-MM-DD), the date a request that names none is given")
        elif values.get("default_date") is not None:
            raise UserError(f"{where}: default_date is for a URL template with {{date}}; a "
                            "layer of one acquisition date gives it as date")
    for key, lo, hi in (("min_zoom", 0, 24), ("max_zoom", 0, 24), ("tile_size", 64, 4096),
                        ("max_tiles", 1, 100_000), ("max_tile_bytes", 1024, 1 << 30),
                        ("failure_threshold", 1, 1000)):
        value = values.get(key, getattr(ProviderConfig, key))
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise UserError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    if values.get("min_zoom", 0) > values.get("max_zoom", 19):
        raise UserError(f"{where}: min_zoom is above max_zoom")
    timeout = values.get("timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not \
            0 < timeout <= 300:
        raise UserError(f"{where}: timeout_s must be a number of seconds in (0, 300]")
    cooldown = values.get("cooldown_s", 60.0)
    if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or not \
            0 < cooldown <= 86400:
        raise UserError(f"{where}: cooldown_s must be a number of seconds in (0, 86400], got "
                        f"{cooldown!r}")
    if values.get("bounds") is not None:
        try:
            values["bounds"] = parse_bbox(values["bounds"])
        except UserError as exc:
            raise UserError(f"{where}: bounds: {exc}") from None
    if not isinstance(values.get("headers", {}), Mapping):
        raise UserError(f"{where}: headers must be a mapping")
    for key in ("attribution", "api_key_env", "matrix_prefix", "endpoint_url"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise UserError(f"{where}: {key} must be a string")
    return ProviderConfig(**values)


def load_config(path: str | Path) -> list[ProviderConfig]:
    """The providers of a YAML (``.yaml``/``.yml``) or JSON config file, checked."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the provider config ({exc})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: say where
        raise UserError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                        f"({str(exc).splitlines()[0]})") from None
    items = doc.get("providers") if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise UserError(f"{path}: expected 'providers:' with a list of providers")
    configs = [_check_provider(raw, i, path.parent) for i, raw in enumerate(items)]
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: provider names are not unique: {dupes}")
    return configs


class _Catalogue:
    def __init__(self, cfg: ProviderConfig):
        self.cfg = cfg
        self._doc: dict[str, Any] | None = None
        self._seen: int | None = None  # the local file's mtime when read
        self.version = ""  # the catalogue's own version (mtime, or a digest of an S3 one)

    def doc(self) -> dict[str, Any]:
        """The parsed catalogue; a local file that changed is re-read (the last good one kept
        while it is being rewritten), one on S3 is read once."""
        path = self.cfg.catalogue or ""
        mtime = None
        if not is_s3(path):
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                mtime = None
        if self._doc is not None and (mtime is None or mtime == self._seen):
            return self._doc
        try:
            with s3_env(self.cfg.endpoint_url):
                doc = read_catalogue(path, self.cfg.endpoint_url)
        except UserError as exc:
            if self._doc is None:
                raise
            log.warning("imagery catalogue %s: %s; using the previous version", path, exc)
            return self._doc
        self._doc, self._seen = doc, mtime
        self.version = (str(mtime) if mtime is not None else hashlib.sha256(
            json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16])
        return doc

    def _hits(self, bbox: Sequence[float], date: str | None) -> list[dict[str, Any]]:
        try:
            hits = find_imagery(self.doc(), bbox)
        except UserError as exc:
            raise _Skip(str(exc)) from None
        if not hits:
            raise _Skip("no indexed raster meets the area")
        if date is not None:
            hits = [f for f in hits if (f["properties"]["datetime"] or "9999")[:10] <= date]
            if not hits:
                raise _Skip(f"no raster acquired on or before {date}")
        return hits

    def _covering(self, bbox: Sequence[float], date: str | None) -> list[dict[str, Any]]:
        hits = self._hits(bbox, date)
        area = box(*bbox)
        covered = union_all([shape(f["geometry"]) for f in hits]).intersection(area).area
        if covered < _MIN_COVER * area.area:
            raise _Skip(f"its rasters cover {covered / area.area:.0%} of the area")
        return hits

    def candidates(self, area: BaseGeometry, date: str | None
                   ) -> list[tuple[dict[str, Any], BaseGeometry]]:
        """(entry, WGS84 footprint) of each raster meeting ``area``, or _Skip saying why."""
        hits = self._hits(area.bounds, date)
        out = [(f, fp) for f in hits if (fp := shape(f["geometry"])).intersects(area)]
        if not out:
            raise _Skip("no indexed raster meets the area")
        return out

    def _source(self, f: dict[str, Any]) -> ImagerySource:
        try:
            uri = raster_uri(self.doc(), f, self.cfg.catalogue)
        except UserError as exc:
            raise _Skip(str(exc)) from None
        if is_s3(uri):  # S3 objects: the catalogue's own version stands for theirs
            version = f"catalogue-{self.version}"
        else:
            try:
                st = os.stat(uri)
            except OSError:
                raise _Skip(f"raster {f['id']}: {uri} is missing (re-run roadvision imagery "
                            "index)") from None
            if os.path.islink(uri) or not os.path.isfile(uri):
                raise _Skip(f"raster {f['id']}: {uri} is not a plain file")
            version = f"{st.st_size}-{st.st_mtime_ns}"
        p = f["properties"]
        return ImagerySource(self.cfg.name, "catalogue", str(f["id"]), self.cfg.attribution,
                             p.get("datetime"), p.get("gsd_m"), uri, version)

    def source(self, f: dict[str, Any]) -> ImagerySource | None:
        """The entry's raster, or None with a warning when it is gone or not a plain file."""
        try:
            return self._source(f)
        except _Skip as exc:
            log.warning("imagery catalogue %s: %s; skipped", self.cfg.catalogue, exc)
            return None

    def find(self, bbox: Sequence[float], date: str | None) -> list[ImagerySource]:
        return [s for f in self._covering(bbox, date) if (s := self.source(f)) is not None]


class _Tiles:
    def __init__(self, cfg: ProviderConfig, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.breaker = Breaker(cfg.failure_threshold, cfg.cooldown_s, clock)

    def _date(self, date: str | None) -> str | None:
        """The acquisition date of the tiles this provider gives a request for imagery on or
        before ``date`` (None: any date), or _Skip when it has none to give."""
        c = self.cfg
        if c.dated_template:  # a time-dimension layer: the date asked for is passed through
            return date or c.default_date
        if date is None:
            return c.date
        if c.date is None:
            raise _Skip("its tiles carry no acquisition date (set `date:` in its config); a "
                        "dated request skips it")
        if c.date > date[:10]:
            raise _Skip(f"its imagery is dated {c.date}, after {date[:10]}")
        return c.date

    def _check(self, bbox: Sequence[float], date: str | None) -> str | None:
        """The date its tiles carry for this request, or _Skip saying why it cannot answer."""
        b = self.cfg.bounds
        if b is not None and not box(*b).contains(box(*bbox)):
            raise _Skip(f"the area is outside its bounds {list(b)}")
        if self.cfg.api_key_env and not os.environ.get(self.cfg.api_key_env):
            raise _Skip(f"its API key variable ${self.cfg.api_key_env} is not set")
        return self._date(date)

    def _unless_open(self, source: ImagerySource) -> ImagerySource:
        refusal = self.breaker.refusal()
        if refusal is not None:
            raise _Open(refusal, source)
        return source

    def _zoom(self, bbox: Sequence[float], gsd: float) -> tuple[int, float]:
        lat = (bbox[1] + bbox[3]) / 2
        z = zoom_for_gsd(gsd, lat, self.cfg.min_zoom, self.cfg.max_zoom, self.cfg.tile_size)
        return z, ground_resolution(z, lat, self.cfg.tile_size)

    def find(self, bbox: Sequence[float], date: str | None) -> list[ImagerySource]:
        dated = self._check(bbox, date)  # no GSD asked: report its finest zoom
        z = self.cfg.max_zoom
        return [self._unless_open(self._source(z, ground_resolution(
            z, (bbox[1] + bbox[3]) / 2, self.cfg.tile_size), dated))]

    def planned(self, bbox: Sequence[float], gsd: float, date: str | None) -> ImagerySource:
        """The source this provider would read for ``bbox`` at ``gsd`` (no tile fetched)."""
        dated = self._check(bbox, date)
        return self._unless_open(self._source(*self._zoom(bbox, gsd), dated))

    def stitch(self, bbox: Sequence[float], z: int, date: str | None
               ) -> tuple[np.ndarray, Affine]:
        """The tiles over ``bbox`` (``date`` fills a {date} template), through the breaker;
        :class:`ProviderError` when they cannot be had."""
        c = self.cfg
        label = f"{c.name} ({c.kind})"
        refusal = self.breaker.acquire()
        if refusal is not None:  # opened since the plan was made, or another trial runs
            raise ProviderError(label, refusal)
        tiles = TileSource(c.url or "", c.tile_size, c.timeout_s, c.max_tile_bytes,
                           c.matrix_prefix, os.environ.get(c.api_key_env or "") or None,
                           tuple(c.headers.items()),
                           (date or c.default_date) if c.dated_template else None)
        try:
            out = stitch(tiles, bbox, z, c.max_tiles)
        except TileError as exc:
            if exc.fault:
                self.breaker.failed(exc.reason)
            else:
                self.breaker.release()
            raise ProviderError(label, str(exc), exc.fault) from None
        except BaseException:  # not the provider's doing (a bug, an interrupt): no verdict
            self.breaker.release()
            raise
        self.breaker.succeeded()
        return out

    def _source(self, z: int, res: float, date: str | None) -> ImagerySource:
        return ImagerySource(self.cfg.name, self.cfg.kind, f"{self.cfg.name}/z{z}",
                             self.cfg.attribution, date, round(res, 4), self.cfg.url or "",
                             f"z{z}", z)


class ImageryChain:
    """Providers in order; see the module docstring for the whole API."""

    def __init__(self, providers: Sequence[ProviderConfig],
                 clock: Callable[[], float] = time.monotonic):
        """``clock``: seconds, monotonic (``time.monotonic``); the circuit breakers' time, so
        that a test can move it instead of sleeping."""
        self.configs = list(providers)
        self._providers = [_Catalogue(c) if c.kind == "catalogue" else _Tiles(c, clock)
                           for c in self.configs]

    @classmethod
    def from_config(cls, path: str | Path | None = None,
                    catalogues: Sequence[str | Path] = (), env: bool = True,
                    clock: Callable[[], float] = time.monotonic) -> ImageryChain:
        """The chain of ``path`` (else ``$ROADVISION_IMAGERY_PROVIDERS`` unless ``env`` is
        False; neither: none), after the local ``catalogues`` given directly (named
        ``catalogue-1``, ...)."""
        path = path or (os.environ.get(ENV_VAR) if env else None) or None
        local = [ProviderConfig(f"catalogue-{i}", "catalogue", True, catalogue=str(c))
                 for i, c in enumerate(catalogues, start=1)]
        return cls(local + (load_config(path) if path else []), clock)

    def circuits(self) -> dict[str, CircuitState]:
        """Each tile provider's circuit breaker, by provider name, in chain order."""
        return {c.name: p.breaker.snapshot() for c, p in zip(self.configs, self._providers,
                                                              strict=True)
                if isinstance(p, _Tiles)}

    def _enabled(self, catalogues: bool) -> list[tuple[str, Any]]:
        """(label, provider) of the enabled catalogue (or tile) providers, in chain order."""
        return [(f"{c.name} ({c.kind})", p) for c, p in zip(self.configs, self._providers,
                                                            strict=True)
                if c.enabled and (c.kind == "catalogue") == catalogues]

    def _in_order(self, tried: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        order = {f"{c.name} ({c.kind})": i for i, c in enumerate(self.configs)}
        return tuple(sorted(tried, key=lambda t: order.get(t[0], len(order))))

    def find(self, bbox: Sequence[float], date: str | None = None) -> list[ImagerySource]:
        """Every enabled provider's imagery for the area, in chain order (tile providers are
        not asked for pixels here, only checked for coverage and key)."""
        bbox = parse_bbox(bbox)
        found, tried = [], []
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            if not cfg.enabled:
                continue
            try:
                found.extend(provider.find(bbox, date))
            except _Skip as exc:
                tried.append((f"{cfg.name} ({cfg.kind})", str(exc)))
        if not found:
            raise NoImageryError(bbox, tried)
        return found

    def plan(self, area: BaseGeometry | Sequence[float], gsd_m: float,
             date: str | None = None) -> ImageryPlan:
        """Which sources an answer for the WGS84 ``area`` (a polygon or a bbox) reads at
        ``gsd_m``: the one lookup (module docstring); nothing is fetched, so a caller can key
        a cache on the plan before it reads a pixel."""
        if not isinstance(area, BaseGeometry):
            area = box(*parse_bbox(area))
        tried: list[tuple[str, str]] = []
        candidates = []
        for label, provider in self._enabled(catalogues=True):
            try:
                candidates += [(label, provider, f, fp)
                               for f, fp in provider.candidates(area, date)]
            except _Skip as exc:
                tried.append((label, str(exc)))
        # finest first, then the newest, across every catalogue (chain order breaks ties)
        candidates.sort(key=lambda c: c[2]["properties"].get("datetime") or "", reverse=True)
        candidates.sort(key=lambda c: c[2]["properties"]["gsd_m"])
        local: list[ImagerySource] = []
        covered: BaseGeometry | None = None
        remaining = area
        for label, provider, feature, footprint in candidates:
            gain = remaining.intersection(footprint)
            if gain.is_empty or gain.area <= area.area * _SLIVER:
                continue
            try:
                source = provider._source(feature)
            except _Skip as exc:  # its file is gone: the next raster may cover the same part
                log.warning("imagery catalogue %s: %s; skipped", provider.cfg.catalogue, exc)
                tried.append((label, str(exc)))
                continue
            local.append(source)
            covered = footprint if covered is None else union_all([covered, footprint])
            remaining = area.difference(covered)
            if remaining.is_empty or remaining.area <= area.area * _SLIVER:
                remaining = Polygon()
                break
        coverage = 1.0 - (0.0 if remaining.is_empty else remaining.area / area.area)
        tiles: list[ImagerySource] = []
        held: list[ImagerySource] = []
        if not remaining.is_empty and remaining.area > area.area * _GAP:
            for label, provider in self._enabled(catalogues=False):
                try:
                    tiles.append(provider.planned(remaining.bounds, float(gsd_m), date))
                except _Open as exc:  # skipped at once; a cached answer may still stand
                    tried.append((label, str(exc)))
                    held.append(exc.source)
                except _Skip as exc:
                    tried.append((label, str(exc)))
        return ImageryPlan(tuple(local), tuple(tiles), max(0.0, min(1.0, coverage)), remaining,
                           self._in_order(tried), tuple(held))

    def fetch_tiles(self, source: ImagerySource, bbox: Sequence[float]
                    ) -> tuple[np.ndarray, Affine]:
        """A planned tile source's tiles over the WGS84 ``bbox``, stitched: RGB pixels and
        their EPSG:3857 transform; :class:`ProviderError` when the provider fails or its
        circuit is open. A ``{date}`` template is filled with ``source.date`` (the date the
        plan asked for)."""
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            if cfg.name == source.provider and isinstance(provider, _Tiles):
                return provider.stitch(bbox, int(source.zoom or cfg.max_zoom), source.date)
        raise UserError(f"no tile provider named {source.provider!r} in this chain")

    def read(self, bbox: Sequence[float], gsd_m: float, date: str | None = None,
             crs: Any = None) -> GeoImage:
        """The area's pixels at ``gsd_m``, as :meth:`plan` chose them: the local rasters, then
        the first tile provider that answers for the part they leave."""
        bbox = parse_bbox(bbox)
        if not 0.01 <= float(gsd_m) <= 1000:
            raise UserError(f"gsd {gsd_m} m/px is out of range (0.01 .. 1000)")
        plan = self.plan(bbox, float(gsd_m), date)
        tried = list(plan.tried)
        used, tiles = list(plan.local), None
        if plan.tile_bbox is not None:
            for source in plan.tiles:
                try:
                    tiles = self.fetch_tiles(source, plan.tile_bbox)
                except ProviderError as exc:
                    tried.append((exc.provider, exc.reason))
                    continue
                used.append(source)
                break
        if tiles is None and plan.local_coverage < _MIN_COVER:
            if plan.local:
                tried.append(("local catalogues",
                              f"their rasters cover {plan.local_coverage:.0%} of the area"))
            raise NoImageryError(bbox, list(self._in_order(tried)))
        if plan.local:
            image = self._mosaic_local(plan.local, bbox, float(gsd_m), crs)
            if tiles is not None:
                _fill(image, *tiles)
        else:
            assert tiles is not None  # no local raster and no tiles raised above
            image = mosaic_array(*tiles, "EPSG:3857", bbox, float(gsd_m), crs or "EPSG:3857")
        image.sources = tuple(used)
        return image

    def _mosaic_local(self, sources: Sequence[ImagerySource], bbox: Sequence[float],
                      gsd: float, crs: Any) -> GeoImage:
        import rasterio

        # one rasterio environment for the read: the first source's catalogue's S3 endpoint
        endpoint = next((c.endpoint_url for c in self.configs if c.name == sources[0].provider),
                        None)
        try:
            with s3_env(endpoint):
                if crs is None:
                    with rasterio.open(sources[0].href) as first:
                        crs = first.crs
                return mosaic_rasters([s.href for s in sources], bbox, gsd, crs)
        except UserError:
            raise  # the area is too large at this GSD: no provider would do better
        except Exception as exc:  # rasterio / GDAL: name the rasters, in one line
            raise UserError(f"reading the rasters {[s.imagery_id for s in sources]} failed "
                            f"({exc})") from None

    def describe(self) -> list[dict[str, Any]]:
        """One row per provider, in order: name, kind, coverage, zoom/GSD, date, enabled,
        key, circuit (a tile provider's breaker; "-" for a catalogue)."""
        rows = []
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            row = {"name": cfg.name, "kind": cfg.kind, "enabled": cfg.enabled,
                   "key": cfg.key_source(), "attribution": cfg.attribution}
            if cfg.kind == "catalogue":
                row["source"] = cfg.catalogue
                row["circuit"] = "-"
                try:
                    feats = provider.doc()["features"]
                    gsds = [f["properties"]["gsd_m"] for f in feats]
                    row["coverage"] = (f"{len(feats)} rasters" + (
                        f" in {_bounds(feats)}" if feats else ""))
                    row["zoom"] = (f"{min(gsds):g}-{max(gsds):g} m/px" if gsds else "-")
                    row["date"] = _date_range(feats)
                except UserError as exc:
                    row["coverage"], row["zoom"] = f"unreadable: {exc}", "-"
                    row["date"] = "-"
            else:
                row["source"] = cfg.url
                row["coverage"] = str(list(cfg.bounds)) if cfg.bounds else "world"
                row["zoom"] = f"z{cfg.min_zoom}-{cfg.max_zoom}"
                row["date"] = (f"{{date}} (default {cfg.default_date})" if cfg.dated_template
                               else cfg.date or "undated")
                row["circuit"] = provider.breaker.snapshot().describe()
            rows.append(row)
        return rows


def _bounds(features: list[dict[str, Any]]) -> str:
    b = [f["bbox"] for f in features]
    return str([round(min(v[0] for v in b), 5), round(min(v[1] for v in b), 5),
                round(max(v[2] for v in b), 5), round(max(v[3] for v in b), 5)])


def _date_range(features: list[dict[str, Any]]) -> str:
    """The acquisition dates of a catalogue's rasters, "first..last" (undated ones counted)."""
    dates = sorted(d[:10] for f in features if (d := f["properties"].get("datetime")))
    undated = len(features) - len(dates)
    text = (dates[0] if dates[0] == dates[-1] else f"{dates[0]}..{dates[-1]}") if dates else ""
    if undated:
        text += f"{' + ' if text else ''}{undated} undated"
    return text or "-"


def _fill(image: GeoImage, pixels: np.ndarray, transform: Affine) -> None:
    """Warp stitched EPSG:3857 tiles onto ``image``'s grid where it has no pixels yet."""
    src_crs = RasterioCRS.from_epsg(3857)
    height, width = image.covered.shape
    warped = np.zeros((3, height, width), np.uint8)
    for band in range(3):
        reproject(np.ascontiguousarray(pixels[..., band]), warped[band], src_transform=transform,
                  src_crs=src_crs, dst_transform=image.transform, dst_crs=image.crs,
                  resampling=Resampling.bilinear)
    seen = np.zeros((height, width), np.uint8)
    reproject(np.ones(pixels.shape[:2], np.uint8), seen, src_transform=transform,
              src_crs=src_crs, dst_transform=image.transform, dst_crs=image.crs, src_nodata=0,
              dst_nodata=0, resampling=Resampling.nearest)
    take = (seen > 0) & ~image.covered
    image.pixels[take] = warped.transpose(1, 2, 0)[take]
    image.covered |= take
