"""Mosaic imagery onto one grid: the area asked for, at a ground sample distance, in one CRS.

Each source is warped (bilinear) onto the target grid and fills the pixels no earlier source
covered, so the caller's priority order (finest, newest first) decides where sources overlap.
Local rasters are read through a warped VRT, which reads only the part (and overview) of a
Cloud-Optimised GeoTIFF the grid needs; stitched tiles are warped from the array in memory.

The grid's pixel size in CRS units is the ground GSD times the CRS's scale factor at the
area's centre (1.0 near a UTM zone's centre, 1 / cos(latitude) in Web Mercator), so a model
trained at 10 cm sees 10 cm pixels whatever CRS the mosaic is in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Proj
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject

from roadvision.errors import UserError

from .crs import area_in_crs
from .raster import GeoImage

__all__ = ["MAX_PIXELS", "target_grid", "mosaic_rasters", "mosaic_array"]

#: The most pixels one mosaic may hold (3 bytes each: ~200 MB); an area beyond it is refused.
MAX_PIXELS = 64_000_000


def _scale(crs: CRS, lon: float, lat: float) -> float:
    return float(Proj(crs).get_factors(lon, lat).meridional_scale)


def target_grid(bbox: Sequence[float], gsd: float, crs: CRS | str,
                anchor: tuple[float, float] | None = None) -> tuple[int, int, Affine, CRS]:
    """(height, width, transform, crs) of the WGS84 ``bbox`` at ``gsd`` ground metres/pixel.

    ``anchor`` (x, y in ``crs``): a corner of a source pixel the grid's lines go through, so
    a source in the same CRS at the same GSD is copied pixel for pixel, not resampled.
    """
    crs = CRS.from_user_input(crs)
    left, bottom, right, top = area_in_crs(bbox, crs).bounds
    step = gsd * _scale(crs, (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    if anchor is not None:
        step = gsd  # the source's own pixel size is in CRS units already
        left = anchor[0] + math.floor((left - anchor[0]) / step + 1e-9) * step
        top = anchor[1] + math.ceil((top - anchor[1]) / step - 1e-9) * step
    width = max(1, math.ceil((right - left) / step))
    height = max(1, math.ceil((top - bottom) / step))
    if width * height > MAX_PIXELS:
        raise UserError(f"area {list(bbox)} at {gsd} m/px is {width} x {height} px, more than "
                        f"{MAX_PIXELS} pixels; ask for a smaller area or a coarser GSD")
    return height, width, Affine(step, 0, left, 0, -step, top), crs


def _empty(height: int, width: int, transform: Affine, crs: CRS, gsd: float) -> GeoImage:
    return GeoImage(np.zeros((height, width, 3), np.uint8), transform,
                    rasterio.crs.CRS.from_wkt(crs.to_wkt()), gsd, np.zeros((height, width), bool))


def mosaic_rasters(uris: Sequence[str], bbox: Sequence[float], gsd: float, crs: CRS | str
                   ) -> GeoImage:
    """The rasters (paths or ``s3://`` URIs, opened in the caller's rasterio environment), in
    priority order, on the grid of ``bbox``; ``covered`` says where any had data."""
    anchor = None
    if uris:
        with rasterio.open(uris[0]) as first:
            if first.crs is not None and CRS.from_user_input(first.crs) == CRS.from_user_input(
                    crs):
                anchor = (first.transform.c, first.transform.f)
    height, width, transform, crs = target_grid(bbox, gsd, crs, anchor)
    out = _empty(height, width, transform, crs, gsd)
    for uri in uris:
        with rasterio.open(uri) as src, WarpedVRT(
                src, crs=out.crs, transform=transform, width=width, height=height,
                resampling=Resampling.bilinear, add_alpha=True) as vrt:
            data = vrt.read((1, 2, 3, vrt.count))  # the alpha band the warp added comes last
        fill = (data[3] > 0) & ~out.covered
        out.pixels[fill] = data[:3].transpose(1, 2, 0)[fill]
        out.covered |= fill
        if out.covered.all():
            break
    return out


def mosaic_array(pixels: np.ndarray, src_transform: Affine, src_crs: CRS | str,
                 bbox: Sequence[float], gsd: float, crs: CRS | str) -> GeoImage:
    """An RGB array [H, W, 3] with its georeference (stitched tiles), warped onto the grid."""
    height, width, transform, crs = target_grid(bbox, gsd, crs)
    out = _empty(height, width, transform, crs, gsd)
    src_crs = rasterio.crs.CRS.from_user_input(src_crs)
    band_out = np.zeros((height, width), np.uint8)
    for band in range(3):
        reproject(np.ascontiguousarray(pixels[..., band]), band_out,
                  src_transform=src_transform, src_crs=src_crs, dst_transform=transform,
                  dst_crs=out.crs, resampling=Resampling.bilinear)
        out.pixels[..., band] = band_out
    seen = np.zeros((height, width), np.uint8)
    reproject(np.ones(pixels.shape[:2], np.uint8), seen, src_transform=src_transform,
              src_crs=src_crs, dst_transform=transform, dst_crs=out.crs, src_nodata=0,
              dst_nodata=0, resampling=Resampling.nearest)
    out.covered[:] = seen > 0
    return out
