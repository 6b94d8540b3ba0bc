"""Web Mercator tiles: zoom for a GSD, the tiles over an area, URL templates, fetch, stitch.

Tiles are the Google / OSM quad tree in EPSG:3857 (WMTS's ``GoogleMapsCompatible`` tile
matrix set): zoom z has 2^z x 2^z tiles of ``tile_size`` px, x from the west, y (row) from
the north. A URL template names a tile with ``{z}/{x}/{y}`` (XYZ) or ``{TileMatrix}``,
``{TileRow}``, ``{TileCol}`` (WMTS, REST or KVP); ``{api_key}`` is filled from an environment
variable and never appears in a message (:func:`redact`); ``{date}`` (a time-dimension layer)
is filled with the acquisition date asked for (``TileSource.date``, "YYYY-MM-DD").

Each fetch has a timeout, a size limit and a content-type check (an HTML error page served
with status 200 is not a tile), and decodes with Pillow; a failed tile raises
:class:`TileError` with the tile and the reason. ``TileError.fault`` says whether the failure
is the provider's (unreachable, timed out, HTTP 5xx / 401 / 403 / 408 / 429, not an image: it
counts towards the provider's circuit breaker in ``roadvision.geo.providers``) or not (a tile
that is not there, 404 / 410 and other 4xx; an area needing too many tiles: nothing was asked).
"""

from __future__ import annotations

import io
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

__all__ = ["ORIGIN", "TileError", "TileSource", "ground_resolution", "zoom_for_gsd",
           "tile_range", "tile_transform", "fetch_tile", "stitch", "redact"]

#: Half the Web Mercator world's width, metres (EPSG:3857's x range is +-ORIGIN).
ORIGIN = 20037508.342789244
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp")


class TileError(Exception):
    """One tile could not be had; the message names it and says why, ``reason`` is the why
    alone (no tile, no URL) and ``fault`` whether it speaks against the provider's health."""

    def __init__(self, message: str, reason: str | None = None, fault: bool = True) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.fault = fault


#: HTTP statuses below 500 that still mean the provider is not serving us (its key refused, it
#: timed out, it is rate limiting): they count as failures. Other 4xx (404: no tile there) are
#: the provider answering; they say nothing against it.
_FAULT_STATUSES = (401, 403, 408, 429)


@dataclass(frozen=True)
class TileSource:
    """How to fetch a provider's tiles."""

    url: str  # template: {z} {x} {y} or {TileMatrix} {TileRow} {TileCol}; {api_key} optional
    tile_size: int = 256
    timeout_s: float = 10.0
    max_bytes: int = 4 << 20  # a tile larger than this is refused
    matrix_prefix: str = ""  # WMTS tile matrix identifiers such as "EPSG:3857:{z}"
    # the value, from the environment variable the config names; kept out of repr()
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    date: str | None = None  # the {date} of a time-dimension template ("YYYY-MM-DD")

    def url_for(self, z: int, x: int, y: int, key: str | None = None) -> str:
        return self.url.format(z=z, x=x, y=y, TileMatrix=f"{self.matrix_prefix}{z}",
                               TileRow=y, TileCol=x,
                               api_key=self.api_key if key is None else key,
                               date=self.date or "")


def redact(source: TileSource, z: int, x: int, y: int) -> str:
    """The tile's URL with the API key replaced, for messages."""
    return source.url_for(z, x, y, key="***")


def ground_resolution(z: int, lat: float, tile_size: int = 256) -> float:
    """Ground metres per pixel of zoom ``z`` at latitude ``lat``."""
    return 2 * ORIGIN * math.cos(math.radians(lat)) / (tile_size * 2 ** z)


def zoom_for_gsd(gsd: float, lat: float, min_zoom: int, max_zoom: int,
                 tile_size: int = 256) -> int:
    """The coarsest zoom at least as fine as ``gsd`` at ``lat`` (downsampled to it, never
    upsampled), within the provider's zoom range (its finest when none is fine enough)."""
    for z in range(min_zoom, max_zoom + 1):
        if ground_resolution(z, lat, tile_size) <= gsd * (1 + 1e-9):
            return z
    return max_zoom


def _tile_xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    lat = max(min(lat, 85.05112878), -85.05112878)
    n = 2 ** z
    x = (lon + 180.0) / 360.0 * n
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return x, y


def tile_range(bbox: Sequence[float], z: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive: the tiles of zoom ``z`` meeting the WGS84 ``bbox``."""
    n = 2 ** z
    fx0, fy0 = _tile_xy(bbox[0], bbox[3], z)  # north-west corner
    fx1, fy1 = _tile_xy(bbox[2], bbox[1], z)  # south-east corner
    clamp = lambda v: min(max(int(math.floor(v)), 0), n - 1)  # noqa: E731
    return clamp(fx0), clamp(fy0), clamp(fx1 - 1e-9), clamp(fy1 - 1e-9)


def tile_transform(z: int, x: int, y: int, tile_size: int = 256) -> Affine:
    """The EPSG:3857 geotransform of tile (z, x, y)'s pixels (north-up)."""
    step = 2 * ORIGIN / (tile_size * 2 ** z)
    return Affine(step, 0, -ORIGIN + x * tile_size * step, 0, -step,
                  ORIGIN - y * tile_size * step)


def fetch_tile(source: TileSource, z: int, x: int, y: int) -> np.ndarray:
    """One tile as RGB [tile_size, tile_size, 3] uint8, or :class:`TileError`."""
    from PIL import Image, UnidentifiedImageError

    where = f"tile {z}/{x}/{y} ({redact(source, z, x, y)})"

    def failed(reason: object, fault: bool = True) -> TileError:
        return TileError(f"{where}: {reason}", str(reason), fault)

    request = urllib.request.Request(source.url_for(z, x, y),
                                     headers={"User-Agent": "roadvision", **dict(source.headers)})
    try:
        with urllib.request.urlopen(request, timeout=source.timeout_s) as response:
            kind = (response.headers.get_content_type() or "").lower()
            if kind not in _IMAGE_TYPES:
                raise failed(f"content type {kind!r} is not an image")
            body = response.read(source.max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise failed(f"HTTP {exc.code} {exc.reason}",
                     exc.code >= 500 or exc.code in _FAULT_STATUSES) from None
    except urllib.error.URLError as exc:
        raise failed("timed out" if isinstance(exc.reason, TimeoutError) else exc.reason) from None
    except TimeoutError:
        raise failed(f"timed out after {source.timeout_s} s") from None
    except OSError as exc:
        raise failed(exc) from None
    if len(body) > source.max_bytes:
        raise failed(f"larger than {source.max_bytes} bytes")
    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise failed(f"not a decodable image ({exc})") from None
    if image.size != (source.tile_size, source.tile_size):
        raise failed(f"{image.size[0]} x {image.size[1]} px, expected {source.tile_size} px "
                     "tiles")
    return np.asarray(image.convert("RGB"))


def stitch(source: TileSource, bbox: Sequence[float], z: int, max_tiles: int = 256
           ) -> tuple[np.ndarray, Affine]:
    """The tiles of zoom ``z`` over ``bbox`` in one RGB array, and its EPSG:3857 transform."""
    x0, y0, x1, y1 = tile_range(bbox, z)
    nx, ny, ts = x1 - x0 + 1, y1 - y0 + 1, source.tile_size
    if nx * ny > max_tiles:
        raise TileError(f"the area needs {nx * ny} tiles at zoom {z}, more than {max_tiles}",
                        fault=False)  # nothing was asked: no word on the provider's health
    out = np.zeros((ny * ts, nx * ts, 3), np.uint8)
    for j in range(ny):
        for i in range(nx):
            out[j * ts:(j + 1) * ts, i * ts:(i + 1) * ts] = fetch_tile(source, z, x0 + i, y0 + j)
    return out, tile_transform(z, x0, y0, ts)
