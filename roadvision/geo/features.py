"""Class raster + confidence -> lane-marking line features with their attributes.

Two stages, so memory stays flat over a large raster: :func:`trace_block` turns one block's
class ids into *pieces* (a centre line in the raster's CRS, its painted length, mean confidence
and width), and :func:`build_features` joins the pieces of every block, class by class, into
features (dashes of one line and lines cut at block edges become one feature) and scores them.

Attributes of a feature: ``id``, ``class``, ``length_m`` (joined line, gaps included),
``width_m`` (painted width estimate), ``confidence`` (mean max-class probability on the line),
``dash_count`` (painted pieces), ``paint_ratio`` (painted share of the length) and ``wear``
(1 - painted share against the class's expected pattern: 0 = as painted, 1 = gone); the
caller adds model and imagery provenance.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from scipy.ndimage import label
from shapely import LineString, MultiLineString
from shapely.geometry.base import BaseGeometry

from .lines import JoinRule, join_pieces, smooth_line
from .skeleton import skeleton_paths

__all__ = ["Piece", "ClassStyle", "style_for", "trace_block", "build_features", "clip_features",
           "FEATURE_FIELDS", "number_features"]

_DISCRETE = ("Point", "MultiPoint", "Polygon", "MultiPolygon")

#: Attribute names, in output order (writers and tests read them from here).
FEATURE_FIELDS = ("id", "class", "length_m", "width_m", "confidence", "wear", "dash_count",
                  "paint_ratio")


@dataclass(frozen=True)
class ClassStyle:
    """What a class's painted line looks like when new."""

    expected_paint_ratio: float  # 1.0 solid; dashed about 1/3 (3 m dash, 6-9 m gap)
    join: JoinRule


_SOLID = ClassStyle(1.0, JoinRule(max_gap=3.0))  # bridges cars, shadows and block seams
# The longest gap in the generator's cities is 12 m (Berlin); real codes reach 12-15 m.
_DASHED = ClassStyle(1 / 3, JoinRule(max_gap=13.0))


def style_for(name: str) -> ClassStyle:
    return _DASHED if "dashed" in name and "solid" not in name else _SOLID


@dataclass
class Piece:
    """One traced centre line of one class, in the raster's CRS (metres)."""

    cls: int
    line: LineString
    confidence: float
    width_m: float
    extra: dict[str, Any] = field(default_factory=dict)


def _to_world(rc: np.ndarray, transform: Affine) -> np.ndarray:
    """(row, col) pixel indices -> (x, y) of the pixel centres."""
    col, row = rc[:, 1] + 0.5, rc[:, 0] + 0.5
    t = transform
    return np.stack([t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f], axis=1)


def trace_block(classes: np.ndarray, confidence: np.ndarray, transform: Affine, gsd: float,
                num_classes: int, min_length_m: float = 0.4,
                skip: Collection[int] = ()) -> list[Piece]:
    """Pieces of every lane class in one block (``transform``: the block's own top-left);
    the classes in ``skip`` (areas and points: :mod:`roadvision.geo.areas`) are left out."""
    pieces = []
    for cls in range(1, num_classes):
        if cls in skip:
            continue
        mask = classes == cls
        if not mask.any():
            continue
        # Width = painted area / centre-line length of each connected stroke (exact for a
        # straight line of any width; a skeleton-distance estimate is 1 px off for even widths).
        labels, _ = label(mask, structure=np.ones((3, 3), bool))
        areas = np.bincount(labels.ravel())
        # A stroke with fewer pixels than a minimal 1 px line of ``min_length_m`` is a speck:
        # dropped before the (per-pixel) skeleton walk, which noisy masks would otherwise slow.
        big = areas >= max(2.0, min_length_m / gsd)
        big[0] = False
        mask = big[labels]
        if not mask.any():
            continue
        traced = []
        # No path of fewer pixels can reach min_length_m, even stepping diagonally.
        min_pixels = max(2, int(np.ceil(min_length_m / (gsd * np.sqrt(2)))) + 1)
        for rc in skeleton_paths(mask, min_pixels):
            r, c = rc[:, 0].astype(int), rc[:, 1].astype(int)
            traced.append((rc, r, c, int(labels[r[0], c[0]])))
        skel_px = np.zeros(len(areas))
        for rc, _, _, comp in traced:
            skel_px[comp] += 1.0 + float(np.hypot(*np.diff(rc, axis=0).T).sum())
        for rc, r, c, comp in traced:
            line = smooth_line(_to_world(rc, transform), tolerance=gsd)
            if line.length < min_length_m:
                continue  # specks: a few pixels of noise, not paint
            width_px = areas[comp] / max(skel_px[comp], 1.0)
            pieces.append(Piece(cls, line, float(confidence[r, c].mean()), width_px * gsd))
    return pieces


def build_features(pieces: list[Piece], classes: list[str]) -> list[dict[str, Any]]:
    """Join pieces per class into features (``geometry`` + :data:`FEATURE_FIELDS`)."""
    features: list[dict[str, Any]] = []
    for cls in sorted({p.cls for p in pieces}):
        mine = [p for p in pieces if p.cls == cls]
        name = classes[cls]
        style = style_for(name)
        for chain in join_pieces([p.line for p in mine], style.join):
            members = [mine[i] for i in chain.pieces]
            weights = np.array([m.line.length for m in members])
            ratio = chain.paint_ratio
            features.append({
                "geometry": chain.geometry,
                # the painted pieces alone, for the vector metrics (never written out)
                "painted": MultiLineString([m.line for m in members]),
                "class": name,
                "length_m": round(float(chain.geometry.length), 3),
                "width_m": round(float(np.average([m.width_m for m in members],
                                                  weights=weights)), 3),
                "confidence": round(float(np.average([m.confidence for m in members],
                                                     weights=weights)), 4),
                "wear": round(float(np.clip(1.0 - ratio / style.expected_paint_ratio, 0, 1)), 4),
                "dash_count": len(members),
                "paint_ratio": round(float(ratio), 4),
            })
    return number_features(features)


def number_features(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Features in a stable order (class, then position) with ids 1..n."""
    features.sort(key=lambda f: (f["class"], f["geometry"].bounds))
    for i, f in enumerate(features, start=1):
        f["id"] = i
    return features


def clip_features(features: list[dict[str, Any]], area: BaseGeometry) -> list[dict[str, Any]]:
    """Features cut at the edge of ``area`` (same CRS): lines are continuous, so the part
    inside is kept and its length recomputed; painted counts are kept as measured. Discrete
    features (a crosswalk polygon, an arrow point) are kept whole when they touch the area,
    as marking deliveries do: half a crossing is not an asset."""
    out = []
    for f in features:
        geom = f["geometry"]
        if area.contains(geom):
            out.append(f)
            continue
        if geom.geom_type in _DISCRETE:
            if geom.intersects(area):
                out.append(f)
            continue
        part = geom.intersection(area)
        if part.is_empty or part.length <= 0:
            continue
        if part.geom_type not in ("LineString", "MultiLineString"):
            continue
        out.append({**f, "geometry": part, "length_m": round(float(part.length), 3)})
    return out
