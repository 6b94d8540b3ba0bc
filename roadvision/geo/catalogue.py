"""An imagery catalogue: the footprints of a folder of GeoTIFFs / COGs, found again by area.

A STAC-like JSON FeatureCollection (one Feature per raster: WGS84 footprint polygon and bbox,
``href`` relative to the catalogue's folder, acquisition ``datetime``, ``gsd_m``, ``epsg``,
size), so that a request by coordinates reads only the rasters that cover it. Rasters the
mapping path cannot use (no CRS, not projected, not 8-bit RGB, unreadable) are not indexed but
listed under ``skipped`` with the reason, so an index run loses nothing silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import rasterio
from shapely import box
from shapely.geometry import mapping, shape

from roadvision.errors import UserError

from .crs import to_wgs84
from .raster import open_info

__all__ = ["CATALOGUE_FORMAT", "index_folder", "write_catalogue", "read_catalogue",
           "find_imagery"]

CATALOGUE_FORMAT = "roadvision-imagery-catalogue"
SUFFIXES = (".tif", ".tiff")


def _entry(path: Path, root: Path) -> dict[str, Any]:
    info = open_info(path)
    with rasterio.open(path) as ds:
        tags = ds.tags()
    date = tags.get("acquired") or (tags.get("TIFFTAG_DATETIME", "")[:10].replace(":", "-")
                                    or None)
    footprint = to_wgs84(box(*info.bounds).segmentize(max(info.width, info.height)
                                                      * info.gsd / 16), info.crs)
    return {"type": "Feature", "id": tags.get("imagery_id") or path.stem,
            "bbox": [round(v, 8) for v in footprint.bounds], "geometry": mapping(footprint),
            "properties": {"href": path.relative_to(root).as_posix(), "datetime": date,
                           "gsd_m": info.gsd, "epsg": info.crs.to_epsg(),
                           "width": info.width, "height": info.height}}


def index_folder(folder: str | Path) -> dict[str, Any]:
    """Index every GeoTIFF under ``folder`` (recursively; symbolic links are not followed)."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{folder}: not a folder")
    features, skipped = [], []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        try:
            features.append(_entry(path, root))
        except UserError as exc:
            skipped.append({"href": path.relative_to(root).as_posix(),
                            "reason": str(exc).removeprefix(f"{path}: ")})
    ids = [f["id"] for f in features]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UserError(f"{folder}: imagery ids are not unique: {dupes[:5]}")
    return {"type": "FeatureCollection", "format": CATALOGUE_FORMAT, "format_version": 1,
            "features": features, "skipped": skipped}


def write_catalogue(path: str | Path, doc: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_catalogue(path: str | Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable imagery catalogue ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CATALOGUE_FORMAT:
        raise UserError(f"{path}: not a {CATALOGUE_FORMAT} file")
    return doc


def find_imagery(doc: dict[str, Any], bbox: tuple[float, float, float, float]
                 ) -> list[dict[str, Any]]:
    """Catalogue entries whose footprint meets the WGS84 ``bbox``: finest GSD first, then the
    newest acquisition."""
    area = box(*bbox)
    hits = [f for f in doc["features"] if shape(f["geometry"]).intersects(area)]
    hits.sort(key=lambda f: f["properties"]["datetime"] or "", reverse=True)
    hits.sort(key=lambda f: f["properties"]["gsd_m"])
    return hits
