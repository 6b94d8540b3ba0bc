"""Georeferenced lane tiles: GeoTIFFs around a city's GPS centre, with ground-truth vectors.

Each tile is ``render_lanes`` at a chosen ground sample distance, written as an RGB GeoTIFF in
the city's UTM zone (metres) so that the whole orthophoto path (windows, resampling,
vectorisation, vector metrics) is testable without real imagery. Beside it, a GeoPackage holds
the painted strokes the renderer drew, as lines in the same CRS: ``class`` (the 4- or 12-class
name), ``class_id``, ``width_m``. Longitudinal paint the renderer erased in junction boxes is
cut out of the truth too; paint under cars and trees stays (a survey maps it as one line).
A mosaic (:func:`write_mosaic`) lays tiles edge to edge in one large GeoTIFF for benchmarks,
written window by window so memory stays that of one tile.

Scores on these tiles are synthetic and labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from shapely import LineString, box
from shapely.affinity import affine_transform

from roadvision.data.contract import classes_for
from roadvision.data.output import OutputFolder
from roadvision.data.synth import sample_rng
from roadvision.data.synth.cities import CITIES, City, draw_city
from roadvision.data.synth.lanes import XWALK, render_lanes
from roadvision.errors import UserError
from roadvision.geo.crs import WGS84, utm_crs
from roadvision.geo.raster import write_rgb
from roadvision.geo.writers import write_gpkg
from roadvision.progress import track

__all__ = ["GeoTile", "tile_truth", "write_tiles", "write_mosaic", "city_named",
           "TRUTH_FIELDS", "ACQUIRED"]

TRUTH_FIELDS = ["id", "class", "class_id", "width_m"]
#: The acquisition date the synthetic flights carry (a fixed date keeps output deterministic).
ACQUIRED = "2026-06-01"


@dataclass(frozen=True)
class GeoTile:
    image: Path  # the GeoTIFF
    truth: Path  # its ground-truth GeoPackage
    city: str
    gsd: float
    epsg: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top (metres)


def city_named(name: str | None, rng: np.random.Generator) -> City:
    if name is None:
        return draw_city(rng)
    for city in CITIES:
        if city.name == name:
            return city
    raise UserError(f"unknown city {name!r}; cities: {', '.join(c.name for c in CITIES)}")


def _cut_at(points: np.ndarray, erase: np.ndarray) -> list[np.ndarray]:
    """Runs of ``points`` (x, y px) outside ``erase`` (a junction mask; off-tile = outside)."""
    h, w = erase.shape
    xi, yi = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    erased = np.zeros(len(points), bool)
    erased[inside] = erase[yi[inside], xi[inside]] > 0
    runs, start = [], None
    for i, e in enumerate([*erased.tolist(), True]):
        if not e and start is None:
            start = i
        elif e and start is not None:
            runs.append(points[start:i])
            start = None
    return [r for r in runs if len(r) >= 2]


def tile_truth(meta: dict, width: int, height: int, transform: Affine, gsd: float,
               num_classes: int = 4) -> list[dict]:
    """The renderer's strokes of one tile as truth features in the tile's CRS."""
    names = classes_for("lanes", num_classes)
    frame = box(-0.5, -0.5, width - 0.5, height - 0.5)
    # pixel (x, y), centres at integers -> world: transform * (x + 0.5, y + 0.5)
    t = transform @ Affine.translation(0.5, 0.5)
    matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
    junctions = meta.get("junctions")
    out = []
    for stroke in meta["lines"]:
        cid = stroke["id4"] if num_classes == 4 else stroke["id12"]
        if cid == 0:
            continue
        runs = [stroke["points"]]
        if junctions is not None and stroke["id12"] < XWALK:
            runs = _cut_at(np.asarray(stroke["points"], float), junctions)
        for run in runs:
            part = LineString(run).intersection(frame)
            for line in getattr(part, "geoms", [part]):
                if line.is_empty or line.geom_type != "LineString" or line.length <= 0:
                    continue
                out.append({"geometry": affine_transform(line, matrix), "class": names[cid],
                            "class_id": int(cid), "width_m": round(stroke["width_px"] * gsd, 3)})
    for i, f in enumerate(out, start=1):
        f["id"] = i
    return out


def _origin(city: City) -> tuple[float, float, int]:
    crs = utm_crs(city.lat, city.lon)
    x, y = Transformer.from_crs(WGS84, crs, always_xy=True).transform(city.lon, city.lat)
    return float(x), float(y), int(crs.to_epsg())


def _tags(imagery_id: str) -> dict[str, str]:
    return {"imagery_id": imagery_id, "acquired": ACQUIRED,
            "TIFFTAG_DATETIME": ACQUIRED.replace("-", ":") + " 10:00:00", "synthetic": "true"}


def write_tiles(out: str | Path, n: int, seed: int, size: tuple[int, int] = (256, 256),
                gsd: float = 0.1, city: str | None = None, num_classes: int = 4, *,
                overwrite: bool = False) -> list[GeoTile]:
    """``n`` separate GeoTIFF tiles (+ truth) on a grid around the city centre in ``out``."""
    if n < 1:
        raise UserError(f"n must be a positive integer, got {n!r}")
    if not 0.01 <= gsd <= 1.0:
        raise UserError(f"gsd {gsd} m is out of range (0.01 .. 1.0 m per pixel)")
    width, height = (int(v) for v in size)
    inputs = {"n": n, "seed": seed, "size": [width, height], "gsd": gsd, "city": city,
              "num_classes": num_classes}
    tiles = []
    with OutputFolder(out, command="data synth geotiff", inputs=inputs,
                      overwrite=overwrite) as tmp:
        cols = int(np.ceil(np.sqrt(n)))
        spacing = max(width, height) * gsd + 20.0  # separate flights, 20 m apart
        for i in track(range(n), "synth geotiff", total=n):
            rng = sample_rng(seed, "lanes", i)
            c = city_named(city, rng)
            x0, y0, epsg = _origin(c)
            transform = Affine(gsd, 0, x0 + (i % cols) * spacing, 0, -gsd,
                               y0 - (i // cols) * spacing)
            sample = render_lanes(rng, c, width, height, gsd_m=gsd)
            name = f"tile-s{seed}-{i:04d}"
            write_rgb(tmp / f"{name}.tif", sample.image, transform, f"EPSG:{epsg}",
                      _tags(f"synth-{c.name}-s{seed}-{i:04d}"))
            truth = tile_truth(sample.meta, width, height, transform, gsd, num_classes)
            write_gpkg(tmp / f"{name}.truth.gpkg", truth, f"EPSG:{epsg}", TRUTH_FIELDS,
                       layer="truth")
            left, top = transform.c, transform.f
            tiles.append(GeoTile(Path(out) / f"{name}.tif", Path(out) / f"{name}.truth.gpkg",
                                 c.name, gsd, epsg,
                                 (left, top - height * gsd, left + width * gsd, top)))
    return tiles


def write_mosaic(image: str | Path, truth: str | Path, tiles_x: int, tiles_y: int,
                 tile_px: int = 1024, gsd: float = 0.1, seed: int = 0, city: str = "berlin",
                 num_classes: int = 4) -> GeoTile:
    """One GeoTIFF of ``tiles_x`` x ``tiles_y`` tiles edge to edge (+ one truth GeoPackage).

    Roads do not continue across tile edges (each tile is its own scene); for throughput and
    memory figures that does not matter, and every line's truth is exact.
    """
    import rasterio
    from rasterio.windows import Window

    c = city_named(city, np.random.default_rng(seed))
    x0, y0, epsg = _origin(c)
    transform = Affine(gsd, 0, x0, 0, -gsd, y0)
    width, height = tiles_x * tile_px, tiles_y * tile_px
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 3,
               "dtype": "uint8", "crs": f"EPSG:{epsg}", "transform": transform,
               "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
               "photometric": "RGB", "BIGTIFF": "IF_SAFER"}
    features = []
    with rasterio.open(image, "w", **profile) as ds:
        ds.update_tags(**_tags(f"synth-mosaic-{c.name}-s{seed}"))
        for k in track(range(tiles_x * tiles_y), "synth mosaic", total=tiles_x * tiles_y):
            row, col = divmod(k, tiles_x)
            sample = render_lanes(sample_rng(seed, "lanes", k), c, tile_px, tile_px, gsd_m=gsd)
            ds.write(sample.image.transpose(2, 0, 1),
                     window=Window(col * tile_px, row * tile_px, tile_px, tile_px))
            t = transform @ Affine.translation(col * tile_px, row * tile_px)
            features.extend(tile_truth(sample.meta, tile_px, tile_px, t, gsd, num_classes))
    for i, f in enumerate(features, start=1):
        f["id"] = i
    write_gpkg(truth, features, f"EPSG:{epsg}", TRUTH_FIELDS, layer="truth")
    return GeoTile(Path(image), Path(truth), c.name, gsd, epsg,
                   (x0, y0 - height * gsd, x0 + width * gsd, y0))
