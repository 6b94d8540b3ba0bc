"""An area asked for by coordinates -> lane-marking features, from several rasters at once.

``orthophoto.map_raster`` maps one raster; an area asked for by a WGS84 polygon may span
several (a survey is delivered as tiles, and flights overlap). :func:`map_area` lays one output
grid over the area, in the preferred raster's projected CRS at the model's GSD (its UTM zone
when that raster is stitched Web Mercator tiles, whose metres are not ground metres), and reads
every raster onto it through a GDAL warped view (``WarpedVRT``: resampled, and reprojected
where a raster's CRS differs), block by block. A pixel comes from the first raster, in the
order given (finest GSD, then newest: the chain's order, tiles last), that has it; pixels no
raster has are background and never traced. Each block then takes the same path as
``map_raster`` (``orthophoto.segment_block``: the runtime's sliding-window inference;
``geo.features``: tracing), and the pieces of all blocks are joined into features at the end.

Lines and, with 12 classes, crosswalks, arrows and other markings (``geo.areas``) are built as
``map_raster`` builds them. Clipping follows vendor deliveries (``geo.features.clip_features``):
lines are cut at the area's edge (their length recomputed), discrete markings kept whole when
they touch it. Each feature names the raster under its midpoint (``imagery_id``/
``imagery_date``). Memory is one block per raster read plus the pieces, as in ``map_raster``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely import box
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shapely_transform

from roadvision.errors import UserError
from roadvision.geo.areas import Patch, area_class_ids, build_area_features, trace_areas
from roadvision.geo.crs import WGS84, utm_crs
from roadvision.geo.features import (
    Piece,
    build_features,
    clip_features,
    number_features,
    trace_block,
)
from roadvision.geo.raster import RasterInfo, open_info, plan_blocks
from roadvision.geo.writers import write_gpkg

from .orthophoto import segment_block

__all__ = ["AreaImagery", "AreaConfig", "AreaResult", "Cancelled", "map_area",
           "feature_collection", "gpkg_bytes"]


@dataclass(frozen=True)
class AreaImagery:
    """One raster that may cover the area."""

    path: str  # what rasterio opens (a file, an s3:// URI, a /vsimem/ file of stitched tiles)
    imagery_id: str
    date: str | None = None
    gsd_m: float | None = None  # ground metres per pixel when the CRS's are not (tiles)


@dataclass(frozen=True)
class AreaConfig:
    """How an area is mapped."""

    gsd: float  # metres per pixel the model runs at (``geo.gsd.model_gsd``)
    classes: tuple[str, ...] | None = None  # lane classes kept (None: all of the model's)
    block: int = 1024  # block side in output pixels (memory, as in ``MappingConfig``)
    margin: int = 32  # context read around each block, output pixels
    tta: str = "none"


@dataclass
class AreaResult:
    """What mapping an area produced."""

    features: list[dict[str, Any]]
    crs: CRS  # the features' CRS (projected, metres)
    imagery: list[dict[str, Any]]  # id, date, gsd_m of each raster that gave pixels
    area_km2: float  # the area asked for
    mapped_km2: float  # ground actually segmented (blocks with imagery)
    seconds: float
    timings: dict[str, float]


class Cancelled(Exception):
    """The caller stopped waiting (its deadline passed); mapping stopped between blocks."""


@dataclass
class _Source:
    imagery: AreaImagery
    info: RasterInfo
    footprint: BaseGeometry  # in the output CRS
    rows: tuple[int, int]  # output grid rows / cols the footprint may touch
    cols: tuple[int, int]
    view: Any = None  # the open WarpedVRT
    used: bool = False


def _to_crs(geom: BaseGeometry, src: CRS, dst: CRS) -> BaseGeometry:
    if CRS.from_user_input(src) == CRS.from_user_input(dst):
        return geom
    # densified first, so straight edges stay exact after a non-linear projection
    x0, y0, x1, y1 = geom.bounds
    dense = geom.segmentize(max(x1 - x0, y1 - y0) / 64 or 1.0)
    t = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
    return shapely_transform(t.transform, dense)


def _grid(area: BaseGeometry, gsd: float) -> tuple[int, int, Affine]:
    """(height, width, transform) of a north-up grid at ``gsd`` over ``area``, its origin on
    a multiple of ``gsd`` (the same area always gives the same grid)."""
    left, bottom, right, top = area.bounds
    left, top = math.floor(left / gsd) * gsd, math.ceil(top / gsd) * gsd
    width = max(1, math.ceil((right - left) / gsd - 1e-9))
    height = max(1, math.ceil((top - bottom) / gsd - 1e-9))
    return height, width, Affine(gsd, 0, left, 0, -gsd, top)


def _pixel_span(geom: BaseGeometry, transform: Affine, height: int, width: int
                ) -> tuple[tuple[int, int], tuple[int, int]]:
    left, bottom, right, top = geom.bounds
    inv = ~transform
    c0, r0 = inv @ (left, top)
    c1, r1 = inv @ (right, bottom)
    rows = (max(0, math.floor(min(r0, r1))), min(height, math.ceil(max(r0, r1))))
    cols = (max(0, math.floor(min(c0, c1))), min(width, math.ceil(max(c0, c1))))
    return rows, cols


def map_area(model: Any, rasters: Sequence[AreaImagery], area: BaseGeometry, cfg: AreaConfig,
             provenance: dict[str, Any] | None = None,
             cancelled: Callable[[], bool] | None = None) -> AreaResult:
    """Map the WGS84 polygon ``area`` from ``rasters`` (preferred first) with a lanes model.

    ``provenance`` (model name, version, ...) is added to every feature; ``cancelled`` is asked
    between blocks, and :class:`Cancelled` raised when it says so.
    """
    if model.cfg.task != "lanes":
        raise UserError(f"areas are mapped by a lanes model; this one is {model.cfg.task!r}")
    if not rasters:
        raise UserError("no imagery given for the area")
    start = time.perf_counter()
    classes = list(model.cfg.classes)
    drop = None
    if cfg.classes is not None:
        unknown = sorted(set(cfg.classes) - set(classes[1:]))
        if unknown:
            raise UserError(f"unknown lane classes {unknown}; this model has {classes[1:]}")
        drop = np.array([i for i, name in enumerate(classes) if i and name not in cfg.classes],
                        np.uint8)
    infos = [open_info(r.path) for r in rasters]
    crs = infos[0].crs
    if crs.to_epsg() == 3857:
        # Web Mercator (stitched tiles) is projected but not metric on the ground (a metre of
        # it is cos(latitude) m): the grid, lengths and widths go to the area's UTM zone.
        centre = area.centroid
        crs = rasterio.crs.CRS.from_epsg(utm_crs(centre.y, centre.x).to_epsg())
    area_m = _to_crs(area, WGS84, crs)
    height, width, transform = _grid(area_m, cfg.gsd)
    sources = []
    for imagery, info in zip(rasters, infos, strict=True):
        footprint = _to_crs(box(*info.bounds), info.crs, crs).intersection(area_m)
        if footprint.is_empty:
            continue
        rows, cols = _pixel_span(footprint, transform, height, width)
        sources.append(_Source(imagery, info, footprint, rows, cols))
    pieces: list[Piece] = []
    patches: list[Patch] = []  # crosswalks, arrows, other markings (12 classes)
    area_ids = area_class_ids(classes)
    timings = {"read": 0.0, "inference": 0.0, "trace": 0.0, "join": 0.0}
    mapped_px = 0
    with contextlib.ExitStack() as stack:
        for src in sources:
            ds = stack.enter_context(rasterio.open(src.imagery.path))
            # A 3-band raster gets an alpha band marking where it has pixels; an RGBA one's
            # own alpha band (4) is warped with it.
            src.view = stack.enter_context(WarpedVRT(
                ds, crs=crs, transform=transform, width=width, height=height,
                resampling=Resampling.bilinear, add_alpha=src.info.count == 3))
        for block in plan_blocks(height, width, cfg.block, cfg.margin):
            if cancelled is not None and cancelled():
                raise Cancelled()
            row, col = block.core_origin
            r0, c0, r1, c1 = block.core
            core_box = box(*(transform @ (col, row + r1 - r0)), *(transform @ (col + c1 - c0,
                                                                            row)))
            if not core_box.intersects(area_m):
                continue
            t0 = time.perf_counter()
            image = np.zeros((block.height, block.width, 3), np.uint8)
            covered = np.zeros((block.height, block.width), bool)
            for src in sources:
                if (src.rows[0] >= block.row + block.height or src.rows[1] <= block.row
                        or src.cols[0] >= block.col + block.width or src.cols[1] <= block.col):
                    continue
                data = src.view.read((1, 2, 3, 4), window=Window(block.col, block.row,
                                                                 block.width, block.height))
                take = (data[3] > 0) & ~covered
                if take.any():
                    image[take] = data[:3].transpose(1, 2, 0)[take]
                    covered |= take
                    src.used = True
            core_covered = covered[r0:r1, c0:c1]
            t1 = time.perf_counter()
            timings["read"] += t1 - t0
            if not core_covered.any():
                continue
            ids, conf = segment_block(model, image, block.core, cfg.tta)
            t2 = time.perf_counter()
            ids[~core_covered] = 0  # no imagery there: nothing to see, nothing to trace
            if drop is not None and drop.size:
                ids[np.isin(ids, drop)] = 0
            core_t = transform @ Affine.translation(col, row)
            pieces.extend(trace_block(ids, conf, core_t, cfg.gsd, len(classes), skip=area_ids))
            patches.extend(trace_areas(ids, conf, core_t, cfg.gsd, classes))
            mapped_px += int(core_covered.sum())
            timings["inference"] += t2 - t1
            timings["trace"] += time.perf_counter() - t2
    t3 = time.perf_counter()
    features = build_features(pieces, classes) + build_area_features(patches, classes)
    features = number_features(clip_features(features, area_m))  # ids 1..n of what is kept
    timings["join"] = time.perf_counter() - t3
    used = [s for s in sources if s.used]
    for f in features:
        geom = f["geometry"]
        mid = (geom.interpolate(0.5, normalized=True) if "LineString" in geom.geom_type
               else geom.representative_point())
        under = next((s for s in used if s.footprint.intersects(mid)), used[0] if used else None)
        f.update(provenance or {})
        f["imagery_id"] = under.imagery.imagery_id if under else None
        f["imagery_date"] = under.imagery.date if under else None
    imagery = [{"id": s.imagery.imagery_id, "date": s.imagery.date,
                "gsd_m": round(s.imagery.gsd_m or s.info.gsd, 4)} for s in used]
    return AreaResult(features, crs, imagery, area_m.area / 1e6, mapped_px * cfg.gsd ** 2 / 1e6,
                      time.perf_counter() - start, {k: round(v, 3) for k, v in timings.items()})


def feature_collection(features: list[dict[str, Any]], crs: CRS, fields: Sequence[str],
                       metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (WGS84, coordinates to 1e-7 degrees: about 1 cm), as
    ``geo.writers.write_geojson`` writes it, in memory."""
    # One transformer and one vectorised call for all features (``to_wgs84`` per feature
    # builds a transformer each time: seconds for an area's thousands of features).
    t = Transformer.from_crs(CRS.from_user_input(crs), WGS84, always_xy=True)
    geoms = shapely.transform(np.array([f["geometry"] for f in features], dtype=object),
                              lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    geoms = shapely.set_precision(geoms, 1e-7) if len(features) else []
    out = [{"type": "Feature", "id": f["id"], "geometry": mapping(geom),
            # a line has no stripe count, a crosswalk no dash count (``geo.writers``)
            "properties": {k: f.get(k) for k in fields if k in f}}
           for f, geom in zip(features, geoms, strict=True)]
    return {"type": "FeatureCollection", **(metadata or {}), "features": out}


def gpkg_bytes(features: list[dict[str, Any]], crs: CRS, fields: Sequence[str]) -> bytes:
    """The features as a GeoPackage file's bytes (``geo.writers.write_gpkg``, in the
    features' projected CRS)."""
    with tempfile.TemporaryDirectory(prefix="rv-area-") as tmp:
        path = Path(tmp) / "lane_markings.gpkg"
        write_gpkg(path, features, crs, list(fields))
        data = path.read_bytes()
    return data
