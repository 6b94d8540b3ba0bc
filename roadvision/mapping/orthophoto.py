"""A georeferenced orthophoto -> class raster + lane-marking features, in bounded memory.

The raster is resampled (on read) to the model's GSD and cut into blocks on that grid. Each
block is read with a context margin and goes through ``predict_proba``: a block larger than
the model's input is cut into overlapping windows whose probabilities are blended (the
runtime's sliding-window inference). The block's core is written to the class GeoTIFF and
traced into line pieces; pieces of all blocks are joined into features at the end (a line
crossing a block edge, or a dashed line, becomes one feature). Only one block's pixels and the
pieces (a few hundred bytes per metre of paint) are in memory at any time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from shapely import box

from roadvision.errors import UserError
from roadvision.geo.areas import Patch, area_class_ids, build_area_features, trace_areas
from roadvision.geo.crs import area_in_crs
from roadvision.geo.features import (
    Piece,
    build_features,
    clip_features,
    number_features,
    trace_block,
)
from roadvision.geo.raster import (
    ClassRasterWriter,
    RasterInfo,
    open_info,
    output_grid,
    plan_blocks,
    read_block,
)
from roadvision.progress import track

__all__ = ["MappingConfig", "RasterResult", "map_raster", "imagery_of", "segment_block"]


@dataclass(frozen=True)
class MappingConfig:
    """How one raster is mapped."""

    gsd: float  # metres per pixel the model runs at (``gsd.model_gsd``)
    block: int = 1024  # block side in output pixels (memory: about 40 bytes x block^2 x classes)
    margin: int = 32  # context read around each block, output pixels
    tta: str = "none"  # a TTA mode of the runtime's inference path
    area: tuple[float, float, float, float] | None = None  # WGS84 bbox to map (None: all)


@dataclass
class RasterResult:
    """What mapping one raster produced."""

    info: RasterInfo
    features: list[dict[str, Any]]
    grid: tuple[int, int, Affine]  # (height, width, transform) of the class raster
    imagery: dict[str, str | None]  # id, date
    area_km2: float  # ground area mapped
    seconds: float
    timings: dict[str, float]  # seconds spent reading, in inference, tracing, joining


def imagery_of(path: str | Path) -> dict[str, str | None]:
    """The imagery's id and acquisition date from its tags (``imagery_id``/``acquired``, or
    TIFF's ``TIFFTAG_DATETIME``); the file name and None when it carries none."""
    with rasterio.open(path) as ds:
        tags = ds.tags()
    date = tags.get("acquired")
    if not date and tags.get("TIFFTAG_DATETIME"):
        date = tags["TIFFTAG_DATETIME"][:10].replace(":", "-")
    return {"id": tags.get("imagery_id") or Path(path).stem, "date": date or None}


def _area_window(info: RasterInfo, cfg: MappingConfig, height: int, width: int,
                 transform: Affine):
    """(area polygon in the raster's CRS, pixel window row0, col0, row1, col1) or Nones."""
    if cfg.area is None:
        return None, None
    area = area_in_crs(cfg.area, info.crs)
    if not area.intersects(box(*info.bounds)):
        raise UserError(f"{info.path}: the imagery does not cover the area {list(cfg.area)} "
                        f"(imagery bounds {[round(v, 1) for v in info.bounds]} in "
                        f"{info.crs.to_string()})")
    left, bottom, right, top = area.bounds
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x, y in ((left, top), (right, bottom))), strict=True)
    r0, r1 = (int(np.clip(np.floor(min(rows)), 0, height)),
              int(np.clip(np.ceil(max(rows)), 0, height)))
    c0, c1 = (int(np.clip(np.floor(min(cols)), 0, width)),
              int(np.clip(np.ceil(max(cols)), 0, width)))
    return area, (r0, c0, r1, c1)


def segment_block(model: Any, image: np.ndarray, core: tuple[int, int, int, int],
                  tta: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(class ids uint8, confidence float32) of a block's ``core`` (row0, col0, row1, col1):
    the whole read (core plus margin) goes through the runtime's one inference path, so the
    model sees each core pixel's surroundings."""
    from roadvision.models.preprocess import prepare_sample
    from roadvision.runtime.inference import lane_mask, model_gsd_m, predict_proba

    probs = predict_proba(model, [prepare_sample(model.cfg, image)], tta, batch_size=1)[0]
    # the bundle's decision settings (class biases, short-piece removal), as evaluation and
    # serving apply them, on the whole read so a piece crossing the core's edge is judged whole
    ids = lane_mask(probs, model.cfg, model_gsd_m(model))
    conf = probs.max(dim=0).values.numpy()
    r0, c0, r1, c1 = core
    return ids[r0:r1, c0:c1], conf[r0:r1, c0:c1]


def map_raster(model: Any, path: str | Path, cfg: MappingConfig,
               class_raster: str | Path | None = None,
               provenance: dict[str, Any] | None = None) -> RasterResult:
    """Map one raster with a lanes ``model``; writes ``class_raster`` when given.

    ``provenance`` (model name, version, ...) is added to every feature, with the imagery's
    ``imagery_id`` and ``imagery_date``.
    """
    if model.cfg.task != "lanes":
        raise UserError(f"{path}: orthophotos need a lanes model; this one is "
                        f"{model.cfg.task!r}")
    start = time.perf_counter()
    info = open_info(path)
    imagery = imagery_of(path)
    height, width, transform = output_grid(info, cfg.gsd)
    area, window = _area_window(info, cfg, height, width, transform)
    blocks = plan_blocks(height, width, cfg.block, cfg.margin, window)
    classes = list(model.cfg.classes)
    writer = (ClassRasterWriter(class_raster, height, width, transform, info.crs, classes)
              if class_raster is not None else None)
    pieces: list[Piece] = []
    patches: list[Patch] = []  # crosswalks, arrows, other markings (12 classes)
    area_ids = area_class_ids(classes)
    pixels = 0
    timings = {"read": 0.0, "inference": 0.0, "trace": 0.0, "join": 0.0}
    try:
        with rasterio.open(path) as ds:
            for block in track(blocks, f"map {Path(path).name}", total=len(blocks)):
                t0 = time.perf_counter()
                image = read_block(ds, info, cfg.gsd, block)
                t1 = time.perf_counter()
                ids_core, conf_core = segment_block(model, image, block.core, cfg.tta)
                t2 = time.perf_counter()
                row, col = block.core_origin
                if writer is not None:
                    writer.write(row, col, ids_core)
                core_t = transform @ Affine.translation(col, row)
                pieces.extend(trace_block(ids_core, conf_core, core_t, cfg.gsd, len(classes),
                                          skip=area_ids))
                patches.extend(trace_areas(ids_core, conf_core, core_t, cfg.gsd, classes))
                pixels += ids_core.size
                timings["read"] += t1 - t0
                timings["inference"] += t2 - t1
                timings["trace"] += time.perf_counter() - t2
    finally:
        if writer is not None:
            writer.close()
    t3 = time.perf_counter()
    features = number_features(build_features(pieces, classes)
                               + build_area_features(patches, classes))
    timings["join"] = time.perf_counter() - t3
    if area is not None:
        features = clip_features(features, area)
    extra = {**(provenance or {}), "imagery_id": imagery["id"], "imagery_date": imagery["date"]}
    for f in features:
        f.update(extra)
    return RasterResult(info, features, (height, width, transform), imagery,
                        pixels * cfg.gsd ** 2 / 1e6, time.perf_counter() - start,
                        {k: round(v, 3) for k, v in timings.items()})
