"""Class raster + confidence -> area and point features: crosswalks, arrows, other markings.

The 12-class taxonomy (``LANE_CLASSES_12``) holds paint that is not a line: a crosswalk is a
row of stripes, an arrow a shaft and a head, "other marking" text or symbols. Their centre line
means nothing, so :mod:`roadvision.geo.features` leaves these classes out and this module turns
them into what marking inventories deliver:

- ``crosswalk``: one polygon per crossing, the stripes closed into one outline
  (morphological closing by the stripe gap), with ``stripe_count``, the painted ``area_m2`` and
  ``wear`` (painted share of the outline against a new zebra's half);
- ``arrow``: one point per arrow (the painted centroid), with ``area_m2`` and
  ``orientation_deg`` (the long axis, 0-180 degrees clockwise from grid north: a mask cannot
  tell which end is the tip);
- ``other_marking``: one polygon per painted patch.

Same two stages as the lines, so memory stays flat: :func:`trace_areas` turns one block into
patches (polygons in the raster's CRS), :func:`build_area_features` merges the patches of every
block (a crossing cut by a block seam becomes one) and scores them. Discrete features are kept
whole when an area of interest clips them (:func:`roadvision.geo.features.clip_features`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy.ndimage import label
from shapely.geometry import Point, Polygon, shape

__all__ = ["AREA_CLASSES", "POINT_CLASSES", "AREA_FIELDS", "Patch", "area_class_ids",
           "trace_areas", "build_area_features"]

#: Classes mapped as polygons or points rather than centre lines.
AREA_CLASSES = frozenset({"crosswalk", "arrow", "other_marking"})
#: Of those, the ones delivered as points.
POINT_CLASSES = frozenset({"arrow"})
#: Attributes of an area or point feature, in output order.
AREA_FIELDS = ("id", "class", "area_m2", "confidence", "wear", "stripe_count", "orientation_deg")

# Zebra stripes are 0.5 m wide with 0.5 m gaps (the generator's and most codes'); closing by a
# little more than the gap joins a crossing's stripes and nothing else.
_STRIPE_GAP_M = 0.7
_ZEBRA_PAINT_RATIO = 0.5
# Pieces of one arrow (shaft and head) or one symbol lie this close.
_SYMBOL_GAP_M = 0.3


@dataclass
class Patch:
    """One connected painted patch of an area class, in the raster's CRS (metres)."""

    cls: int
    polygon: Polygon
    confidence: float


def area_class_ids(classes: list[str]) -> set[int]:
    """Ids of the classes in ``classes`` that are mapped as areas or points."""
    return {i for i, name in enumerate(classes) if name in AREA_CLASSES}


def trace_areas(classes: np.ndarray, confidence: np.ndarray, transform: Affine, gsd: float,
                class_names: list[str], min_area_m2: float = 0.05) -> list[Patch]:
    """Patches of every area class in one block (``transform``: the block's own top-left)."""
    patches = []
    for cls in sorted(area_class_ids(class_names)):
        mask = classes == cls
        if not mask.any():
            continue
        labels, count = label(mask, structure=np.ones((3, 3), bool))
        conf = np.bincount(labels.ravel(), weights=confidence.ravel(), minlength=count + 1)
        size = np.bincount(labels.ravel(), minlength=count + 1)
        for geom, value in shapes(labels.astype(np.int32), mask=mask, connectivity=8,
                                  transform=transform):
            comp = int(value)
            polygon = shape(geom)
            if polygon.area < min_area_m2 or size[comp] == 0:
                continue  # specks: a few pixels of noise, not paint
            patches.append(Patch(cls, polygon, float(conf[comp] / size[comp])))
    return patches


def _groups(polygons: list[Polygon], gap: float) -> list[list[int]]:
    """Indices of the polygons that lie within ``gap`` of each other, transitively: grown by
    half the gap, such polygons overlap, and their union's parts are the groups."""
    merged = shapely.union_all([p.buffer(gap / 2) for p in polygons])
    parts = shapely.STRtree(list(getattr(merged, "geoms", [merged])))
    groups: dict[int, list[int]] = {}
    for i, polygon in enumerate(polygons):
        part = int(parts.query(polygon.representative_point(), predicate="intersects")[0])
        groups.setdefault(part, []).append(i)
    return list(groups.values())


def _orientation_deg(geom: Any) -> float:
    """Principal axis of ``geom``'s area (second moments), degrees clockwise from grid north in
    [0, 180): for an arrow, the shaft's direction (its head widens it but does not turn it)."""
    sxx = syy = sxy = 0.0
    c = geom.centroid
    for part in getattr(geom, "geoms", [geom]):
        part = shapely.geometry.polygon.orient(part, 1.0)  # exterior counter-clockwise
        for ring in (part.exterior, *part.interiors):  # holes come clockwise: they subtract
            xy = np.asarray(ring.coords) - (c.x, c.y)
            x0, y0, x1, y1 = xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1]
            cross = x0 * y1 - x1 * y0
            sxx += float((cross * (y0 * y0 + y0 * y1 + y1 * y1)).sum()) / 12
            syy += float((cross * (x0 * x0 + x0 * x1 + x1 * x1)).sum()) / 12
            sxy += float((cross * (x0 * y1 + 2 * x0 * y0 + 2 * x1 * y1 + x1 * y0)).sum()) / 24
    # sxx = integral of y^2, syy = of x^2: the covariance matrix is [[syy, sxy], [sxy, sxx]]
    values, vectors = np.linalg.eigh(np.array([[syy, sxy], [sxy, sxx]]))
    dx, dy = vectors[:, int(np.argmax(values))]
    return round(float(np.degrees(np.arctan2(dx, dy)) % 180.0), 1)


def _feature(name: str, members: list[Patch]) -> dict[str, Any]:
    painted = shapely.union_all([m.polygon for m in members])
    areas = np.array([m.polygon.area for m in members])
    confidence = round(float(np.average([m.confidence for m in members], weights=areas)), 4)
    # each kind carries its own attributes only (an arrow has no stripes)
    out: dict[str, Any] = {"class": name, "area_m2": round(float(painted.area), 3),
                           "confidence": confidence}
    if name in POINT_CLASSES:
        out["geometry"] = Point(painted.centroid)
        out["orientation_deg"] = _orientation_deg(painted)
        return out
    if name == "crosswalk":
        gap = _STRIPE_GAP_M / 2
        outline = painted.buffer(gap, join_style="mitre").buffer(-gap, join_style="mitre")
        # stripes cut by a block seam are one stripe: count the painted parts after the union
        out["stripe_count"] = len(getattr(painted, "geoms", [painted]))
        ratio = painted.area / max(outline.area, 1e-9)
        out["wear"] = round(float(np.clip(1.0 - ratio / _ZEBRA_PAINT_RATIO, 0, 1)), 4)
        out["geometry"] = outline
        return out
    out["geometry"] = painted
    return out


def build_area_features(patches: list[Patch], classes: list[str]) -> list[dict[str, Any]]:
    """Merge patches per class into features (``geometry`` + :data:`AREA_FIELDS` but ``id``,
    which the caller numbers together with the line features)."""
    features: list[dict[str, Any]] = []
    for cls in sorted({p.cls for p in patches}):
        mine = [p for p in patches if p.cls == cls]
        name = classes[cls]
        gap = _STRIPE_GAP_M if name == "crosswalk" else _SYMBOL_GAP_M
        for group in _groups([p.polygon for p in mine], gap):
            features.append(_feature(name, [mine[i] for i in group]))
    return features
