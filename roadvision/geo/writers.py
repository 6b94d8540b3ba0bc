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
from shapely import MultiLineString, MultiPolygon
from shapely.geometry import mapping

from .crs import to_wgs84

__all__ = ["write_geojson", "write_gpkg"]


def _props(f: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    # a line has no stripe count, a crosswalk no dash count: each kind its own attributes
    return {k: f.get(k) for k in fields if k in f}


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


#: GeoPackage layers by geometry kind: a layer holds one geometry type (GIS tools expect it).
_KINDS = {"LineString": ("", "LineString"), "MultiLineString": ("", "LineString"),
          "Polygon": ("_areas", "Polygon"), "MultiPolygon": ("_areas", "Polygon"),
          "Point": ("_points", "Point")}


def write_gpkg(path: str | Path, features: list[dict[str, Any]], crs: CRS, fields: list[str],
               layer: str = "lane_markings") -> Path:
    """The features in ``crs`` as GeoPackage layers: lines in ``layer``, crosswalks and other
    areas in ``{layer}_areas``, arrows in ``{layer}_points`` (each only when it has features;
    an empty line layer when nothing was found)."""
    groups: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for f in features:
        suffix, kind = _KINDS[f["geometry"].geom_type]
        groups.setdefault(suffix, (kind, []))[1].append(f)
    if not groups:
        groups[""] = ("LineString", [])
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    tmp.unlink(missing_ok=True)
    wkt = CRS.from_user_input(crs).to_wkt()
    for i, (suffix, (kind, members)) in enumerate(sorted(groups.items())):
        mine = [name for name in fields if not members or any(name in f for f in members)]
        _write_layer(tmp, f"{layer}{suffix}", kind, members, mine, wkt, append=i > 0)
    os.replace(tmp, path)
    return path


def _column(values: list[Any]) -> np.ndarray:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool | int | np.integer) for v in values):
        return np.array(values, np.int64)
    if present and all(isinstance(v, float | int | np.floating) for v in present):
        # None -> NaN, which the writer stores as NULL (nan_as_null)
        return np.array([np.nan if v is None else v for v in values], np.float64)
    return np.array(["" if v is None else str(v) for v in values], object)


def _write_layer(path: Path, layer: str, kind: str, features: list[dict[str, Any]],
                 fields: list[str], crs_wkt: str, *, append: bool) -> None:
    geoms = [f["geometry"] for f in features]
    multi = {"LineString": MultiLineString, "Polygon": MultiPolygon}.get(kind)
    if multi is not None and any(g.geom_type.startswith("Multi") for g in geoms):
        geoms = [g if g.geom_type.startswith("Multi") else multi([g]) for g in geoms]
        kind = f"Multi{kind}"
    columns = [_column([f.get(name) for f in features]) for name in fields]
    # pyogrio's raw writer: WKB plus column arrays, so geopandas is not a dependency.
    ogr_write(str(path), np.array(shapely.to_wkb(geoms), dtype=object) if geoms else
              np.array([], dtype=object), columns, fields, crs=crs_wkt, geometry_type=kind,
              driver="GPKG", layer=layer, append=append)
