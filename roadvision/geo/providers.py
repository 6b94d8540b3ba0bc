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

``plan`` is the one lookup (``read`` and the areas route, ``serving/areas.py``, both go through
it): the rasters of every local catalogue together, finest GSD first and then the newest, each
taken when it covers some of what the ones before it left; then, for the part they leave
uncovered, the tile providers in chain order (coverage and key checked, zoom chosen for the
GSD; no tile fetched). The first tile provider is the one asked; one that fails when its tiles
are fetched (``ProviderError``: HTTP error, timeout, not an image) gives way to the next.

``bbox`` is (min_lon, min_lat, max_lon, max_lat) in WGS84 (``area``: a WGS84 polygon or a
bbox); ``date`` ("YYYY-MM-DD") keeps catalogue imagery acquired on or before it (tiles carry
no date and always match); ``gsd_m`` is the ground metres per pixel wanted (the model's,
``roadvision.geo.gsd``). ``read`` answers a :class:`~roadvision.geo.raster.GeoImage` (RGB
pixels, transform, CRS, ground GSD, a ``covered`` mask and the :class:`ImagerySource` records
used) in ``crs``: by default the first local raster's CRS, or EPSG:3857 (Web Mercator) for
tiles; pass a metric CRS (``crs.utm_crs``) to measure lengths in metres whatever the source.
A catalogue file that changes is re-read (the last good version kept while it is being
rewritten). ``ImagerySource.properties()`` gives the ``imagery_id`` / ``imagery_source``
(attribution) / ``imagery_date`` that features carry.
Nothing covers the area: :class:`NoImageryError`, a ``UserError``.

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

No provider exists unless a config or a catalogue names it; external tile providers are off
until a config says ``enabled: true``. API keys live only in environment variables and never
appear in a message, a table or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
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

from .catalogue import find_imagery, raster_uri, read_catalogue
from .crs import parse_bbox
from .mosaic import mosaic_array, mosaic_rasters
from .raster import GeoImage
from .s3 import is_s3, s3_env
from .tiles import TileError, TileSource, ground_resolution, stitch, zoom_for_gsd

__all__ = ["ENV_VAR", "KINDS", "ImagerySource", "ImageryPlan", "ProviderConfig",
           "NoImageryError", "ProviderError", "ImageryChain", "load_config"]

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


@dataclass(frozen=True)
class ImagerySource:
    """One piece of imagery a provider has for an area."""

    provider: str  # the provider's name in the chain
    kind: str  # catalogue | xyz | wmts
    imagery_id: str  # catalogue entry id, or "<provider>/z<zoom>" for tiles
    attribution: str  # the provider's attribution string, passed on to features
    date: str | None  # acquisition date (None: unknown, tiles)
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
    timeout, non-image answer); the caller goes on with the next one."""

    def __init__(self, provider: str, reason: str):
        self.provider = provider  # "<name> (<kind>)", as NoImageryError.tried names it
        self.reason = reason
        super().__init__(f"{provider}: {reason}")


@dataclass(frozen=True)
class ImageryPlan:
    """What the chain would read for an area (:meth:`ImageryChain.plan`), no pixel fetched."""

    local: tuple[ImagerySource, ...]  # catalogue rasters, preferred first
    tiles: tuple[ImagerySource, ...]  # tile providers for the rest, preferred first
    local_coverage: float  # share of the area the local rasters cover, 0..1
    uncovered: BaseGeometry  # WGS84: what the local rasters leave (empty: nothing)
    tried: tuple[tuple[str, str], ...]  # (provider, why) of each provider that cannot answer

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

    def key_source(self) -> str:
        """Where the API key comes from, for the table (never the key itself)."""
        if not self.api_key_env:
            return "-"
        state = "set" if os.environ.get(self.api_key_env) else "unset"
        return f"${self.api_key_env} ({state})"


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
    for key, lo, hi in (("min_zoom", 0, 24), ("max_zoom", 0, 24), ("tile_size", 64, 4096),
                        ("max_tiles", 1, 100_000), ("max_tile_bytes", 1024, 1 << 30)):
        value = values.get(key, getattr(ProviderConfig, key))
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise UserError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    if values.get("min_zoom", 0) > values.get("max_zoom", 19):
        raise UserError(f"{where}: min_zoom is above max_zoom")
    timeout = values.get("timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not \
            0 < timeout <= 300:
        raise UserError(f"{where}: timeout_s must be a number of seconds in (0, 300]")
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
    def __init__(self, cfg: ProviderConfig):
        self.cfg = cfg

    def _check(self, bbox: Sequence[float]) -> None:
        b = self.cfg.bounds
        if b is not None and not box(*b).contains(box(*bbox)):
            raise _Skip(f"the area is outside its bounds {list(b)}")
        if self.cfg.api_key_env and not os.environ.get(self.cfg.api_key_env):
            raise _Skip(f"its API key variable ${self.cfg.api_key_env} is not set")

    def _zoom(self, bbox: Sequence[float], gsd: float) -> tuple[int, float]:
        lat = (bbox[1] + bbox[3]) / 2
        z = zoom_for_gsd(gsd, lat, self.cfg.min_zoom, self.cfg.max_zoom, self.cfg.tile_size)
        return z, ground_resolution(z, lat, self.cfg.tile_size)

    def find(self, bbox: Sequence[float], date: str | None) -> list[ImagerySource]:
        self._check(bbox)  # no GSD asked: report its finest zoom
        z = self.cfg.max_zoom
        return [self._source(z, ground_resolution(z, (bbox[1] + bbox[3]) / 2,
                                                  self.cfg.tile_size))]

    def planned(self, bbox: Sequence[float], gsd: float) -> ImagerySource:
        """The source this provider would read for ``bbox`` at ``gsd`` (no tile fetched)."""
        self._check(bbox)
        return self._source(*self._zoom(bbox, gsd))

    def stitch(self, bbox: Sequence[float], z: int) -> tuple[np.ndarray, Affine]:
        c = self.cfg
        tiles = TileSource(c.url or "", c.tile_size, c.timeout_s, c.max_tile_bytes,
                           c.matrix_prefix, os.environ.get(c.api_key_env or "") or None,
                           tuple(c.headers.items()))
        try:
            return stitch(tiles, bbox, z, c.max_tiles)
        except TileError as exc:
            raise _Skip(str(exc)) from None

    def _source(self, z: int, res: float) -> ImagerySource:
        return ImagerySource(self.cfg.name, self.cfg.kind, f"{self.cfg.name}/z{z}",
                             self.cfg.attribution, None, round(res, 4), self.cfg.url or "",
                             f"z{z}", z)


class ImageryChain:
    """Providers in order; see the module docstring for the whole API."""

    def __init__(self, providers: Sequence[ProviderConfig]):
        self.configs = list(providers)
        self._providers = [(_Catalogue if c.kind == "catalogue" else _Tiles)(c)
                           for c in self.configs]

    @classmethod
    def from_config(cls, path: str | Path | None = None,
                    catalogues: Sequence[str | Path] = (), env: bool = True) -> ImageryChain:
        """The chain of ``path`` (else ``$ROADVISION_IMAGERY_PROVIDERS`` unless ``env`` is
        False; neither: none), after the local ``catalogues`` given directly (named
        ``catalogue-1``, ...)."""
        path = path or (os.environ.get(ENV_VAR) if env else None) or None
        local = [ProviderConfig(f"catalogue-{i}", "catalogue", True, catalogue=str(c))
                 for i, c in enumerate(catalogues, start=1)]
        return cls(local + (load_config(path) if path else []))

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
        if not remaining.is_empty and remaining.area > area.area * _GAP:
            for label, provider in self._enabled(catalogues=False):
                try:
                    tiles.append(provider.planned(remaining.bounds, float(gsd_m)))
                except _Skip as exc:
                    tried.append((label, str(exc)))
        return ImageryPlan(tuple(local), tuple(tiles), max(0.0, min(1.0, coverage)), remaining,
                           self._in_order(tried))

    def fetch_tiles(self, source: ImagerySource, bbox: Sequence[float]
                    ) -> tuple[np.ndarray, Affine]:
        """A planned tile source's tiles over the WGS84 ``bbox``, stitched: RGB pixels and
        their EPSG:3857 transform; :class:`ProviderError` when the provider fails."""
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            if cfg.name == source.provider and isinstance(provider, _Tiles):
                try:
                    return provider.stitch(bbox, int(source.zoom or cfg.max_zoom))
                except _Skip as exc:
                    raise ProviderError(f"{cfg.name} ({cfg.kind})", str(exc)) from None
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
        """One row per provider, in order: name, kind, coverage, zoom/GSD, enabled, key."""
        rows = []
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            row = {"name": cfg.name, "kind": cfg.kind, "enabled": cfg.enabled,
                   "key": cfg.key_source(), "attribution": cfg.attribution}
            if cfg.kind == "catalogue":
                row["source"] = cfg.catalogue
                try:
                    feats = provider.doc()["features"]
                    gsds = [f["properties"]["gsd_m"] for f in feats]
                    row["coverage"] = (f"{len(feats)} rasters" + (
                        f" in {_bounds(feats)}" if feats else ""))
                    row["zoom"] = (f"{min(gsds):g}-{max(gsds):g} m/px" if gsds else "-")
                except UserError as exc:
                    row["coverage"], row["zoom"] = f"unreadable: {exc}", "-"
            else:
                row["source"] = cfg.url
                row["coverage"] = str(list(cfg.bounds)) if cfg.bounds else "world"
                row["zoom"] = f"z{cfg.min_zoom}-{cfg.max_zoom}"
            rows.append(row)
        return rows


def _bounds(features: list[dict[str, Any]]) -> str:
    b = [f["bbox"] for f in features]
    return str([round(min(v[0] for v in b), 5), round(min(v[1] for v in b), 5),
                round(max(v[2] for v in b), 5), round(max(v[3] for v in b), 5)])


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
