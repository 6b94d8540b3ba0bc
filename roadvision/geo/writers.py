"""Feature output: GeoJSON (RFC 7946, WGS84 longitude/latitude) and GeoPackage (pyogrio).

The GeoPackage keeps the raster's projected CRS (metres, as survey deliveries do); the GeoJSON
is WGS84 as its standard requires. Both carry the same attributes in the same order. Files are
written beside their final name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyogrio.raw import write as ogr_write
from pyproj import CRS
from shapely import MultiLineString
from shapely.geometry import mapping

from .crs import to_wgs84

__all__ = ["write_geojson", "write_gpkg"]


def _props(f: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: f.get(k) for k in fields}


def write_geojson(path: str | Path, features: list[dict[str, Any]], crs: CRS,
                  fields: list[str], metadata: dict[str, Any] | None = None) -> Path:
    """A FeatureCollection in WGS84 (coordinates rounded to 1e-7 degrees, about 1 cm)."""
    out = []
    for f in features:
        geom = shapely.set_precision(to_wgs84(f["geometry"], crs), 1e-7)
        out.append({"type": "Feature", "id": f["id"], "geometry": mapping(geom),
                    "properties": _props(f, fields)})
    doc = {"type": "FeatureCollection", "features": out, **(metadata or {})}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    return path


def write_gpkg(path: str | Path, features: list[dict[str, Any]], crs: CRS, fields: list[str],
               layer: str = "lane_markings") -> Path:
    """A GeoPackage layer of the features in ``crs``."""
    geoms = [f["geometry"] for f in features]
    multi = any(g.geom_type == "MultiLineString" for g in geoms)
    if multi:
        geoms = [g if g.geom_type == "MultiLineString" else MultiLineString([g]) for g in geoms]
    columns = []
    for name in fields:
        values = [f.get(name) for f in features]
        if all(isinstance(v, bool | int | np.integer) for v in values) and values:
            columns.append(np.array(values, np.int64))
        elif all(isinstance(v, float | int | np.floating) for v in values) and values:
            columns.append(np.array(values, np.float64))
        else:
            columns.append(np.array(["" if v is None else str(v) for v in values], object))
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    tmp.unlink(missing_ok=True)
    # pyogrio's raw writer: WKB plus column arrays, so geopandas is not a dependency.
    ogr_write(str(tmp), np.array(shapely.to_wkb(geoms), dtype=object) if geoms else
          np.array([], dtype=object), columns, fields, crs=CRS.from_user_input(crs).to_wkt(),
          geometry_type="MultiLineString" if multi else "LineString", driver="GPKG",
          layer=layer)
    os.replace(tmp, path)
    return path
