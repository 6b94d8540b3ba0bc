"""Coordinate reference systems: a metric CRS for a place, WGS84 conversion, areas of interest.

Lengths, widths and buffer tolerances are in metres, so every vector operation runs in the
raster's projected CRS; only GeoJSON output (RFC 7946: WGS84 longitude/latitude) and areas
given by a user as a WGS84 bbox cross into geographic coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyproj import CRS, Transformer
from shapely import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shapely_transform

from roadvision.errors import UserError

__all__ = ["WGS84", "utm_crs", "to_wgs84", "parse_bbox", "area_in_crs"]

WGS84 = CRS.from_epsg(4326)


def utm_crs(lat: float, lon: float) -> CRS:
    """The UTM zone (WGS84 datum) holding ``lat``/``lon``: metres, little scale error there."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _transformer(src: CRS, dst: CRS) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def to_wgs84(geom: BaseGeometry, crs: CRS) -> BaseGeometry:
    """``geom`` from ``crs`` into WGS84 (x = longitude, y = latitude)."""
    return shapely_transform(_transformer(CRS.from_user_input(crs), WGS84).transform, geom)


def parse_bbox(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"min_lon,min_lat,max_lon,max_lat"`` (WGS84) -> four floats, checked for range/order."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise UserError(f"bbox {text!r}: expected four numbers min_lon,min_lat,max_lon,max_lat"
                        ) from None
    if len(values) != 4:
        raise UserError(f"bbox {text!r}: expected four numbers min_lon,min_lat,max_lon,max_lat")
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180
            and -90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise UserError(f"bbox {text!r}: longitude must lie in [-180, 180], latitude in [-90, 90]")
    if min_lon >= max_lon or min_lat >= max_lat:
        raise UserError(f"bbox {text!r}: min must be below max (min_lon,min_lat,max_lon,max_lat)")
    return min_lon, min_lat, max_lon, max_lat


def area_in_crs(bbox: Sequence[float], crs: CRS) -> BaseGeometry:
    """A WGS84 bbox as a polygon in ``crs`` (densified edges, so a UTM image of it is exact)."""
    poly = box(*bbox).segmentize(max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 64)
    return shapely_transform(_transformer(WGS84, CRS.from_user_input(crs)).transform, poly)
