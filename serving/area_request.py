"""The body of ``POST /v1/areas:analyze``, parsed and checked: each fault its own 4xx.

``{"bbox": [min_lon, min_lat, max_lon, max_lat]}`` or ``{"geometry": <GeoJSON Polygon or
MultiPolygon>}`` in WGS84, plus optional ``date`` (imagery acquired on or before it),
``classes`` (a subset of the model's lane classes), ``format`` (``geojson`` or ``gpkg``),
``model`` (which lanes model, when several are served) and ``allow_partial`` (map the covered
part when the imagery covers the area only in part).

Faults: a body that is no JSON object -> 400; a field of the wrong type, an unknown field, a
bbox out of range, inverted or degenerate, an invalid polygon (with shapely's
``explain_validity``), a bad date, format or class -> 422 with a ``code`` naming it; an area
over the server's limit -> 413 with the limit and the area asked for. The area is measured on
the WGS84 ellipsoid (``pyproj.Geod``), so the limit means the same at every latitude.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import shapely
from pyproj import Geod
from shapely import box
from shapely.errors import GEOSException
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from .errors import BadRequest, PayloadTooLarge, Unprocessable

__all__ = ["FORMATS", "AreaRequest", "parse_area_request", "check_classes", "area_km2"]

#: Output formats and the media type each is answered with.
FORMATS = {"geojson": "application/geo+json", "gpkg": "application/geopackage+sqlite3"}
FIELDS = ("bbox", "geometry", "date", "classes", "format", "model", "allow_partial")
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class AreaRequest:
    """A checked request."""

    area: BaseGeometry  # WGS84 Polygon or MultiPolygon
    area_km2: float  # on the ellipsoid
    date: str | None  # ISO date, imagery on or before it
    classes: tuple[str, ...] | None  # None: every lane class
    format: str  # a key of FORMATS
    model: str | None
    allow_partial: bool

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return tuple(round(v, 8) for v in self.area.bounds)

    def area_digest(self) -> bytes:
        """The area, normalised (vertex order, start point, 1e-7 degrees: about 1 cm), as a
        digest: a bbox and the same rectangle sent as a polygon share their cache entry."""
        geom = shapely.normalize(shapely.set_precision(self.area, 1e-7))
        return hashlib.sha256(shapely.to_wkb(geom, hex=False)).digest()


def _invalid(message: str, code: str) -> Unprocessable:
    return Unprocessable(message, code=code, reason=code)


def area_km2(geom: BaseGeometry) -> float:
    """The area of a WGS84 polygon on the ellipsoid, km^2.

    Edges are densified first (at most 1/64 of the extent): between two corners a geodesic
    leaves the parallel a bbox edge means. Geodesic polygons cannot describe an area wider
    than a hemisphere (a box spanning 360 degrees of longitude encloses nothing), so an area
    that large is measured as its bounding box on the authalic sphere: an upper bound, and far
    over any limit anyway.
    """
    x0, y0, x1, y1 = geom.bounds
    if x1 - x0 > 90 or y1 - y0 > 45:
        radius = 6371007.2  # authalic radius of WGS84, metres
        return (radius ** 2 * math.radians(x1 - x0)
                * (math.sin(math.radians(y1)) - math.sin(math.radians(y0)))) / 1e6
    dense = geom.segmentize(max(x1 - x0, y1 - y0) / 64) if x1 > x0 or y1 > y0 else geom
    return abs(_GEOD.geometry_area_perimeter(dense)[0]) / 1e6


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_range(min_lon: float, min_lat: float, max_lon: float, max_lat: float,
                 what: str) -> None:
    for name, value, limit in (("min_lon", min_lon, 180), ("max_lon", max_lon, 180),
                               ("min_lat", min_lat, 90), ("max_lat", max_lat, 90)):
        if not -limit <= value <= limit:
            kind = "longitude" if "lon" in name else "latitude"
            raise _invalid(f"{what}: {kind} {name}={value} is out of range [-{limit}, {limit}] "
                           "(WGS84 degrees, longitude first)", "bbox_out_of_range")


def _parse_bbox(raw: Any) -> BaseGeometry:
    if (not isinstance(raw, list) or len(raw) != 4 or not all(_number(v) for v in raw)):
        raise _invalid("bbox must be four numbers [min_lon, min_lat, max_lon, max_lat] "
                       "(WGS84)", "invalid_bbox")
    if not all(math.isfinite(v) for v in raw):
        raise _invalid(f"bbox {raw}: every value must be finite", "invalid_bbox")
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in raw)
    _check_range(min_lon, min_lat, max_lon, max_lat, f"bbox {raw}")
    for axis, lo, hi in (("lon", min_lon, max_lon), ("lat", min_lat, max_lat)):
        if lo > hi:
            raise _invalid(f"bbox {raw} is inverted: min_{axis} {lo} > max_{axis} {hi} "
                           "(order: min_lon, min_lat, max_lon, max_lat)", "bbox_inverted")
        if lo == hi:
            raise _invalid(f"bbox {raw} is degenerate: min_{axis} = max_{axis} = {lo} "
                           "(zero area)", "bbox_degenerate")
    return box(min_lon, min_lat, max_lon, max_lat)


def _parse_geometry(raw: Any) -> BaseGeometry:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("Polygon", "MultiPolygon"):
        raise _invalid(f"geometry must be a GeoJSON Polygon or MultiPolygon, got "
                       f"{kind if kind is not None else type(raw).__name__!r}", "invalid_geometry")
    try:
        geom = shapely.force_2d(shape(raw))
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, GEOSException) as exc:
        raise _invalid(f"geometry is not a readable GeoJSON {kind}: {exc}",
                       "invalid_geometry") from None
    if geom.is_empty:
        raise _invalid("geometry is empty", "invalid_geometry")
    x0, y0, x1, y1 = geom.bounds
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise _invalid("geometry: every coordinate must be finite", "invalid_geometry")
    _check_range(x0, y0, x1, y1, "geometry")
    if not geom.is_valid:
        raise _invalid(f"geometry is not a valid {kind}: {explain_validity(geom)}",
                       "invalid_geometry")
    if geom.area <= 0:
        raise _invalid("geometry is degenerate (zero area)", "bbox_degenerate")
    return geom


def _parse_date(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            pass
    raise _invalid(f"date {raw!r} is not an ISO date (YYYY-MM-DD)", "invalid_date")


def parse_area_request(body: bytes, max_area_km2: float) -> AreaRequest:
    """The checked request, or the ServingError that says what is wrong with it."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not JSON: {exc}", reason="malformed") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object, e.g. "
                         '{"bbox": [min_lon, min_lat, max_lon, max_lat]}', reason="malformed")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s) {unknown}; fields: {list(FIELDS)}", "unknown_field")
    if ("bbox" in doc) == ("geometry" in doc):
        raise _invalid("give the area as exactly one of 'bbox' [min_lon, min_lat, max_lon, "
                       "max_lat] or 'geometry' (a GeoJSON Polygon/MultiPolygon), in WGS84",
                       "missing_area")
    area = _parse_bbox(doc["bbox"]) if "bbox" in doc else _parse_geometry(doc["geometry"])
    fmt = doc.get("format", "geojson")
    if fmt not in FORMATS:
        raise _invalid(f"format {fmt!r} is not one of {list(FORMATS)}", "invalid_format")
    classes = doc.get("classes")
    if classes is not None:
        if (not isinstance(classes, list) or not classes
                or not all(isinstance(c, str) for c in classes)):
            raise _invalid("classes must be a non-empty list of lane class names",
                           "unknown_class")
        classes = tuple(dict.fromkeys(classes))
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model must be the name of a served lanes model", "invalid_model")
    partial = doc.get("allow_partial", False)
    if not isinstance(partial, bool):
        raise _invalid("allow_partial must be true or false", "invalid_allow_partial")
    date = _parse_date(doc.get("date"))
    km2 = area_km2(area)
    if km2 > max_area_km2:
        raise PayloadTooLarge(f"the area asked for is {km2:.3f} km^2; this server analyses at "
                              f"most {max_area_km2:g} km^2 per request: split it into smaller "
                              "areas", code="area_too_large", reason="area_too_large")
    return AreaRequest(area, km2, date, classes, fmt, model, partial)


def check_classes(request: AreaRequest, classes: Sequence[str]) -> tuple[str, ...] | None:
    """The asked classes in the model's order; 422 naming an unknown one (``background`` is
    not a marking)."""
    if request.classes is None:
        return None
    markings = list(classes[1:])
    unknown = [c for c in request.classes if c not in markings]
    if unknown:
        raise _invalid(f"unknown class {unknown[0]!r}; this model's lane classes: {markings}",
                       "unknown_class")
    return tuple(c for c in markings if c in request.classes)
