"""An imagery catalogue: the footprints of a folder of GeoTIFFs / COGs, found again by area.

A STAC-like JSON FeatureCollection (one Feature per raster: WGS84 footprint polygon and bbox,
``href`` relative to the catalogue's folder, acquisition ``datetime``, ``gsd_m``, ``epsg``,
size), so that a request by coordinates reads only the rasters that cover it. Rasters the
mapping path cannot use (no CRS, not projected, not 8-bit RGB, unreadable) are not indexed but
listed under ``skipped`` with the reason, so an index run loses nothing silently.

The folder may be an ``s3://bucket/prefix`` (listed with boto3, read by rasterio's
``/vsis3/``; the endpoint from ``endpoint_url`` or ``AWS_ENDPOINT_URL``: ``roadvision.geo.s3``),
and the catalogue itself may be read from S3. ``root`` records the folder indexed;
:func:`raster_uri` turns an entry back into what rasterio opens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import rasterio
from shapely import box
from shapely.geometry import mapping, shape

from roadvision.errors import UserError

from .crs import to_wgs84
from .raster import open_info
from .s3 import is_s3, list_keys, read_object, s3_env, split_s3

__all__ = ["CATALOGUE_FORMAT", "index_folder", "write_catalogue", "read_catalogue",
           "find_imagery", "raster_uri"]

CATALOGUE_FORMAT = "roadvision-imagery-catalogue"
SUFFIXES = (".tif", ".tiff")


def _entry(path: str | Path, href: str) -> dict[str, Any]:
    info = open_info(path)
    with rasterio.open(path) as ds:
        tags = ds.tags()
    date = tags.get("acquired") or (tags.get("TIFFTAG_DATETIME", "")[:10].replace(":", "-")
                                    or None)
    footprint = to_wgs84(box(*info.bounds).segmentize(max(info.width, info.height)
                                                      * info.gsd / 16), info.crs)
    return {"type": "Feature", "id": tags.get("imagery_id") or PurePosixPath(href).stem,
            "bbox": [round(v, 8) for v in footprint.bounds], "geometry": mapping(footprint),
            "properties": {"href": href, "datetime": date,
                           "gsd_m": info.gsd, "epsg": info.crs.to_epsg(),
                           "width": info.width, "height": info.height}}


def _local_rasters(root: Path) -> list[tuple[str, str]]:
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    return [(str(p), p.relative_to(root).as_posix()) for p in sorted(root.rglob("*"))
            if not p.is_symlink() and p.is_file() and p.suffix.lower() in SUFFIXES]


def index_folder(folder: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """Index every GeoTIFF under ``folder`` (recursively; symbolic links are not followed),
    a local folder or an ``s3://bucket/prefix`` (``endpoint_url``: else ``AWS_ENDPOINT_URL``)."""
    if is_s3(folder):
        bucket, prefix = split_s3(str(folder))
        base = f"s3://{bucket}/{prefix}".rstrip("/")
        rasters = [(f"{base}/{rel}", rel) for rel in list_keys(str(folder), SUFFIXES,
                                                               endpoint_url)]
        root = base
    else:
        rasters = _local_rasters(Path(folder))
        root = str(Path(folder).resolve())
    features, skipped = [], []
    with s3_env(endpoint_url):
        for path, href in rasters:
            try:
                features.append(_entry(path, href))
            except UserError as exc:
                skipped.append({"href": href, "reason": str(exc).removeprefix(f"{path}: ")})
    ids = [f["id"] for f in features]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise UserError(f"{folder}: imagery ids are not unique: {dupes[:5]}")
    return {"type": "FeatureCollection", "format": CATALOGUE_FORMAT, "format_version": 1,
            "root": root, "features": features, "skipped": skipped}


def write_catalogue(path: str | Path, doc: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_catalogue(path: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """A catalogue from a file or an ``s3://`` object, checked to be one."""
    try:
        text = (read_object(str(path), endpoint_url) if is_s3(path) else Path(path).read_bytes())
        doc = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable imagery catalogue ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CATALOGUE_FORMAT:
        raise UserError(f"{path}: not a {CATALOGUE_FORMAT} file")
    return doc


def raster_uri(doc: dict[str, Any], feature: dict[str, Any],
               catalogue: str | Path | None = None) -> str:
    """What rasterio opens for a catalogue entry: ``root``/href (an S3 URI or a path); for a
    local catalogue the file beside the catalogue when it is there (a moved folder still
    works). An href that climbs out of its root (``..``, absolute) is refused."""
    href = str(feature["properties"]["href"])
    parts = PurePosixPath(href).parts
    if not parts or href.startswith("/") or ".." in parts or "\\" in href:
        raise UserError(f"catalogue entry {feature.get('id')!r}: href {href!r} leaves the "
                        "catalogue's folder")
    root = doc.get("root")
    if is_s3(root):
        return f"{str(root).rstrip('/')}/{href}"
    if catalogue is not None and not is_s3(catalogue):
        beside = Path(catalogue).parent / href
        if beside.is_file() or root is None:
            return str(beside)
    if root is None:
        raise UserError(f"catalogue entry {feature.get('id')!r}: the catalogue records no root "
                        "folder; re-index it with roadvision imagery index")
    return str(Path(root) / href)


def find_imagery(doc: dict[str, Any], bbox: tuple[float, float, float, float]
                 ) -> list[dict[str, Any]]:
    """Catalogue entries whose footprint meets the WGS84 ``bbox``: finest GSD first, then the
    newest acquisition."""
    area = box(*bbox)
    hits = [f for f in doc["features"] if shape(f["geometry"]).intersects(area)]
    hits.sort(key=lambda f: f["properties"]["datetime"] or "", reverse=True)
    hits.sort(key=lambda f: f["properties"]["gsd_m"])
    return hits
