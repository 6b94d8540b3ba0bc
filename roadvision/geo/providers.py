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
    chain.read(bbox, gsd_m, date=None, crs=None) -> GeoImage  # the pixels, mosaicked
    chain.describe() -> list[dict]       # one row per provider (`roadvision imagery providers`)

``bbox`` is (min_lon, min_lat, max_lon, max_lat) in WGS84; ``date`` ("YYYY-MM-DD") keeps
catalogue imagery acquired on or before it (tiles carry no date and always match); ``gsd_m``
is the ground metres per pixel wanted (the model's, ``roadvision.geo.gsd``). ``read`` answers a
:class:`~roadvision.geo.raster.GeoImage` (RGB pixels, transform, CRS, ground GSD, a
``covered`` mask and the :class:`ImagerySource` records used) in ``crs``: by default the first
local raster's CRS, or EPSG:3857 (Web Mercator) for tiles; pass a metric CRS (``crs.utm_crs``)
to measure lengths in metres whatever the source. ``ImagerySource.properties()`` gives the
``imagery_id`` / ``imagery_source`` (attribution) / ``imagery_date`` that features carry.
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

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shapely import box, union_all
from shapely.geometry import shape

from roadvision.errors import UserError

from .catalogue import find_imagery, raster_uri, read_catalogue
from .crs import parse_bbox
from .mosaic import mosaic_array, mosaic_rasters
from .raster import GeoImage
from .s3 import is_s3, s3_env
from .tiles import TileError, TileSource, ground_resolution, stitch, zoom_for_gsd

__all__ = ["ENV_VAR", "KINDS", "ImagerySource", "ProviderConfig", "NoImageryError",
           "ImageryChain", "load_config"]

#: The environment variable naming the provider config when ``--providers`` is not given.
ENV_VAR = "ROADVISION_IMAGERY_PROVIDERS"
KINDS = ("catalogue", "xyz", "wmts")
_TEMPLATE_FIELDS = {"xyz": ("{z}", "{x}", "{y}"),
                    "wmts": ("{TileMatrix}", "{TileRow}", "{TileCol}")}
#: A catalogue must cover at least this share of the area to answer (footprint edges are
#: densified polygons, so an exact cover can miss by a hair).
_MIN_COVER = 0.995


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

    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            with s3_env(self.cfg.endpoint_url):
                self._doc = read_catalogue(self.cfg.catalogue, self.cfg.endpoint_url)
        return self._doc

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
        area = box(*bbox)
        covered = union_all([shape(f["geometry"]) for f in hits]).intersection(area).area
        if covered < _MIN_COVER * area.area:
            raise _Skip(f"its rasters cover {covered / area.area:.0%} of the area")
        return hits

    def _source(self, f: dict[str, Any]) -> ImagerySource:
        try:
            uri = raster_uri(self.doc(), f, self.cfg.catalogue)
        except UserError as exc:
            raise _Skip(str(exc)) from None
        version = None
        if not is_s3(uri) and os.path.exists(uri):
            st = os.stat(uri)
            version = f"{st.st_size}-{st.st_mtime_ns}"
        p = f["properties"]
        return ImagerySource(self.cfg.name, "catalogue", str(f["id"]), self.cfg.attribution,
                             p.get("datetime"), p.get("gsd_m"), uri, version)

    def find(self, bbox: Sequence[float], date: str | None) -> list[ImagerySource]:
        return [self._source(f) for f in self._hits(bbox, date)]

    def read(self, bbox: Sequence[float], gsd: float, date: str | None, crs: Any) -> GeoImage:
        hits = self._hits(bbox, date)
        sources = [self._source(f) for f in hits]
        target = crs or f"EPSG:{hits[0]['properties']['epsg']}"
        try:
            with s3_env(self.cfg.endpoint_url):
                image = mosaic_rasters([s.href for s in sources], bbox, gsd, target)
        except UserError:
            raise  # the area is too large at this GSD: no provider would do better
        except Exception as exc:  # rasterio / GDAL: an unreadable raster is this provider's
            raise _Skip(f"reading its rasters failed ({exc})") from None
        image.sources = tuple(sources)
        return image


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

    def _source(self, z: int, res: float) -> ImagerySource:
        return ImagerySource(self.cfg.name, self.cfg.kind, f"{self.cfg.name}/z{z}",
                             self.cfg.attribution, None, round(res, 4), self.cfg.url or "",
                             f"z{z}")

    def find(self, bbox: Sequence[float], date: str | None) -> list[ImagerySource]:
        self._check(bbox)  # no GSD asked: report its finest zoom
        z = self.cfg.max_zoom
        return [self._source(z, ground_resolution(z, (bbox[1] + bbox[3]) / 2,
                                                  self.cfg.tile_size))]

    def read(self, bbox: Sequence[float], gsd: float, date: str | None, crs: Any) -> GeoImage:
        self._check(bbox)
        z, res = self._zoom(bbox, gsd)
        c = self.cfg
        tiles = TileSource(c.url or "", c.tile_size, c.timeout_s, c.max_tile_bytes,
                           c.matrix_prefix, os.environ.get(c.api_key_env or "") or None,
                           tuple(c.headers.items()))
        try:
            pixels, transform = stitch(tiles, bbox, z, c.max_tiles)
        except TileError as exc:
            raise _Skip(str(exc)) from None
        image = mosaic_array(pixels, transform, "EPSG:3857", bbox, gsd, crs or "EPSG:3857")
        image.sources = (self._source(z, res),)
        return image


class ImageryChain:
    """Providers in order; see the module docstring for the whole API."""

    def __init__(self, providers: Sequence[ProviderConfig]):
        self.configs = list(providers)
        self._providers = [(_Catalogue if c.kind == "catalogue" else _Tiles)(c)
                           for c in self.configs]

    @classmethod
    def from_config(cls, path: str | Path | None = None,
                    catalogues: Sequence[str | Path] = ()) -> ImageryChain:
        """The chain of ``path`` (else ``$ROADVISION_IMAGERY_PROVIDERS``; neither: none),
        after the local ``catalogues`` given directly (named ``catalogue-1``, ...)."""
        path = path or os.environ.get(ENV_VAR) or None
        local = [ProviderConfig(f"catalogue-{i}", "catalogue", True, catalogue=str(c))
                 for i, c in enumerate(catalogues, start=1)]
        return cls(local + (load_config(path) if path else []))

    def _each(self, bbox: Sequence[float], call) -> tuple[Any, list[tuple[str, str]]]:
        tried: list[tuple[str, str]] = []
        for cfg, provider in zip(self.configs, self._providers, strict=True):
            if not cfg.enabled:
                continue
            try:
                return call(provider), tried
            except _Skip as exc:
                tried.append((f"{cfg.name} ({cfg.kind})", str(exc)))
        return None, tried

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

    def read(self, bbox: Sequence[float], gsd_m: float, date: str | None = None,
             crs: Any = None) -> GeoImage:
        """The area's pixels at ``gsd_m`` from the first provider that covers all of it."""
        bbox = parse_bbox(bbox)
        if not 0.01 <= float(gsd_m) <= 1000:
            raise UserError(f"gsd {gsd_m} m/px is out of range (0.01 .. 1000)")
        image, tried = self._each(bbox, lambda p: p.read(bbox, float(gsd_m), date, crs))
        if image is None:
            raise NoImageryError(bbox, tried)
        return image

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
