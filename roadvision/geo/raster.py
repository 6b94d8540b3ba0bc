"""Georeferenced rasters: open, plan windows at a target ground sample distance, read, write.

Memory stays bounded for any raster size: nothing reads a whole image. A raster is processed
as a grid of *blocks* on the output grid (the source resampled to the model's GSD); each block
is read with a context margin, so the model sees the surroundings of every pixel it labels,
and only the block's core is kept. Reads go through rasterio's windowed, resampled ``read``,
which on a Cloud-Optimised GeoTIFF touches only the internal tiles (and overview) it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from roadvision.errors import UserError

__all__ = ["RasterInfo", "Block", "GeoImage", "open_info", "output_grid", "plan_blocks",
           "read_block", "ClassRasterWriter", "write_rgb"]


@dataclass(frozen=True)
class RasterInfo:
    """What a raster is, without its pixels."""

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int  # bands
    gsd: float  # metres per pixel (the larger of the two axes; the CRS is in metres)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the raster's CRS."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def open_info(path: str | Path) -> RasterInfo:
    """Read a raster's georeference, refusing what the lane pipeline cannot use."""
    try:
        with rasterio.open(path) as ds:
            crs, transform, count = ds.crs, ds.transform, ds.count
            width, height = ds.width, ds.height
            dtypes = set(ds.dtypes)
    except RasterioIOError as exc:
        raise UserError(f"{path}: not a readable raster ({exc})") from None
    if crs is None:
        raise UserError(f"{path}: the raster has no CRS (georeference it first, e.g. with "
                        "gdal_edit.py -a_srs EPSG:32633)")
    if transform.is_identity:
        raise UserError(f"{path}: the raster has no geotransform")
    if transform.b or transform.d:
        raise UserError(f"{path}: rotated rasters are not supported (warp it north-up first)")
    if not crs.is_projected:
        raise UserError(f"{path}: CRS {crs.to_string()} is not projected; lengths need metres "
                        "(warp it to a UTM zone, e.g. gdalwarp -t_srs EPSG:326NN)")
    if count < 3:
        raise UserError(f"{path}: {count} band(s); an RGB orthophoto needs 3 (4: RGBA)")
    if dtypes != {"uint8"}:
        raise UserError(f"{path}: pixel type {sorted(dtypes)}; expected 8-bit RGB")
    if abs(crs.linear_units_factor[1] - 1.0) > 1e-9:
        raise UserError(f"{path}: CRS {crs.to_string()} is in {crs.linear_units}; lengths "
                        "and tolerances need metres (warp it to a UTM zone)")
    gsd = max(abs(transform.a), abs(transform.e))
    return RasterInfo(str(path), crs, transform, width, height, count, gsd)


@dataclass
class GeoImage:
    """An RGB raster held in memory with its georeference: what an imagery chain's ``read``
    answers (``roadvision.geo.providers``), whether the pixels came from local GeoTIFFs or
    from tiles, so the segmenter downstream does not care where they came from."""

    pixels: np.ndarray  # [H, W, 3] uint8
    transform: Affine
    crs: CRS
    gsd: float  # ground metres per pixel (in EPSG:3857 a pixel's CRS size is gsd / cos(lat))
    covered: np.ndarray  # [H, W] bool: a source had data there (the rest is 0)
    sources: tuple = ()  # the ImagerySource records the pixels came from, in priority order

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in ``crs``."""
        h, w = self.pixels.shape[:2]
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (w, h)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def write(self, path: str | Path, tags: dict[str, str] | None = None) -> None:
        """As an RGB GeoTIFF (a file or a ``/vsimem/`` path), for code that opens rasters by
        path (``roadvision.mapping``)."""
        ids = ",".join(getattr(s, "imagery_id", str(s)) for s in self.sources)
        write_rgb(path, self.pixels, self.transform, self.crs,
                  {**({"imagery_id": ids} if ids else {}), **(tags or {})})


@dataclass(frozen=True)
class Block:
    """One block of the output grid: the window read (core plus margin) and the core kept."""

    row: int  # read window on the output grid, in output pixels
    col: int
    height: int
    width: int
    core: tuple[int, int, int, int]  # (row0, col0, row1, col1) of the core inside the read

    @property
    def core_origin(self) -> tuple[int, int]:
        """The core's top-left on the output grid."""
        return self.row + self.core[0], self.col + self.core[1]


def output_grid(info: RasterInfo, gsd: float) -> tuple[int, int, Affine]:
    """(height, width, transform) of ``info`` resampled to ``gsd`` metres per pixel."""
    scale = info.gsd / gsd  # output pixels per source pixel
    height = max(1, math.ceil(info.height * scale))
    width = max(1, math.ceil(info.width * scale))
    step = gsd  # the CRS is in metres (open_info)
    t = info.transform
    return height, width, Affine(math.copysign(step, t.a), 0, t.c, 0, math.copysign(step, t.e),
                                 t.f)


def plan_blocks(height: int, width: int, block: int = 1024, margin: int = 32,
                area: tuple[int, int, int, int] | None = None) -> list[Block]:
    """Blocks of ``block`` px (cores) covering ``area`` (row0, col0, row1, col1; default the
    whole grid), each read with up to ``margin`` px of context on every side."""
    r0, c0, r1, c1 = area or (0, 0, height, width)
    blocks = []
    for top in range(r0, r1, block):
        for left in range(c0, c1, block):
            bottom, right = min(top + block, r1), min(left + block, c1)
            rt, cl = max(0, top - margin), max(0, left - margin)
            rb, cr = min(height, bottom + margin), min(width, right + margin)
            blocks.append(Block(rt, cl, rb - rt, cr - cl,
                                (top - rt, left - cl, bottom - rt, right - cl)))
    return blocks


def read_block(ds: rasterio.DatasetReader, info: RasterInfo, gsd: float, block: Block
               ) -> np.ndarray:
    """The block's RGB pixels [H, W, 3] uint8 on the output grid (bilinear resampling)."""
    scale = info.gsd / gsd
    window = Window(block.col / scale, block.row / scale, block.width / scale,
                    block.height / scale)
    data = ds.read((1, 2, 3), window=window, out_shape=(3, block.height, block.width),
                   resampling=Resampling.bilinear, boundless=True, fill_value=0)
    return np.ascontiguousarray(data.transpose(1, 2, 0))


class ClassRasterWriter:
    """A single-band uint8 class GeoTIFF (tiled, deflate), written block by block."""

    def __init__(self, path: str | Path, height: int, width: int, transform: Affine, crs: CRS,
                 classes: list[str]):
        profile = {"driver": "GTiff", "height": height, "width": width, "count": 1,
                   "dtype": "uint8", "crs": crs, "transform": transform, "tiled": True,
                   "blockxsize": 256, "blockysize": 256, "compress": "deflate", "nodata": 255}
        self._ds = rasterio.open(path, "w", **profile)
        self._ds.update_tags(classes=",".join(classes))

    def write(self, row: int, col: int, classes: np.ndarray) -> None:
        self._ds.write(classes[None], window=Window(col, row, classes.shape[1], classes.shape[0]))

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> ClassRasterWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_rgb(path: str | Path, image: np.ndarray, transform: Affine, crs: CRS,
              tags: dict[str, str] | None = None) -> None:
    """An RGB uint8 [H, W, 3] GeoTIFF (tiled 256 px, deflate: Cloud-Optimised-GeoTIFF-like)."""
    height, width = image.shape[:2]
    tiled = height >= 256 and width >= 256
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 3, "dtype": "uint8",
               "crs": crs, "transform": transform, "compress": "deflate", "photometric": "RGB",
               "tiled": tiled, **({"blockxsize": 256, "blockysize": 256} if tiled else {})}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(image.transpose(2, 0, 1))
        if tags:
            ds.update_tags(**tags)
