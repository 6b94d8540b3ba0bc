"""The ``geometry`` family: roads from another model, seen through another projection.

Lanes: the classic builder makes straight lines, one quadratic Bezier bend or a right-angled
cross. Here a road is a clothoid spline: its curvature changes linearly along arc length in
random segments (how highways and country roads are actually designed), grown both ways from a
point so that junctions still meet at the centre of the main road; lane count and lane width
are drawn per road instead of per city. The finished tile is then seen obliquely (a tilted
camera: a homography applied to image and masks alike), where classic tiles are strictly nadir.

Roadwork: the classic camera is level; here it rolls, yaws and pitches (a homography of the
finished frame), as a dash camera mounted off-axis or a phone held by hand does.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadvision.data.synth import _raster as R
from roadvision.data.synth.cities import City
from roadvision.data.synth.families._warp import homography_pair
from roadvision.data.synth.lanes import _Road

__all__ = ["clothoid_roads", "clothoid_path", "oblique_lanes", "tilted_street"]


def clothoid_path(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
                  min_radius: float) -> np.ndarray:
    """Points every 1 px along a path whose curvature is piecewise linear in arc length."""
    steps = int(length)
    knots = np.sort(np.concatenate([[0, steps], rng.uniform(0, steps, int(rng.integers(1, 5)))]))
    kappa_knots = rng.uniform(-1.0, 1.0, knots.size) / min_radius
    kappa_knots[rng.random(knots.size) < 0.3] = 0.0  # straight stretches between bends
    kappa = np.interp(np.arange(steps), knots, kappa_knots)
    theta = heading + np.cumsum(kappa)
    pts = np.cumsum(np.stack([np.cos(theta), np.sin(theta)], 1), axis=0)
    return np.vstack([start[None], start + pts])


def _through(rng, at: np.ndarray, heading: float, reach: float, min_radius: float) -> np.ndarray:
    """A path through ``at`` (its midpoint), grown forwards and backwards from it."""
    fwd = clothoid_path(rng, at, heading, reach, min_radius)
    back = clothoid_path(rng, at, heading + np.pi, reach, min_radius)
    return np.vstack([back[::-1], fwd[1:]])


def clothoid_roads(rng: np.random.Generator, city: City, layout: str, width: int, height: int,
                   ppm: float) -> list[_Road]:
    """``lanes._road_graph``'s contract (same layouts) from clothoid centre lines."""
    if layout == "none":
        return []
    reach = float(np.hypot(width, height))
    min_radius = rng.uniform(25.0, 120.0) * ppm
    at = np.array([width, height]) * rng.uniform(0.1, 0.9, 2)

    def make(pts: np.ndarray) -> _Road:
        lanes = int(rng.choice([1, 2, 3], p=[0.55, 0.35, 0.1]))
        lane_w = rng.uniform(2.7, 3.9) * ppm
        half = lanes * lane_w + rng.uniform(0.2, 1.2) * ppm
        return _Road(R.resample(pts, 1.0), lanes, lane_w, half, oneway=rng.random() < 0.15)

    a = rng.uniform(0, 2 * np.pi)
    main = _through(rng, at, a, reach, min_radius)
    roads = [make(main)]
    if layout in ("intersection", "t_junction"):
        # The crossing angle is free (30-150 degrees), not near-right as in the classic builder.
        b = a + rng.uniform(np.pi / 6, 5 * np.pi / 6)
        mid = roads[0].centre[len(roads[0].centre) // 2]
        if layout == "intersection":
            roads.append(make(_through(rng, mid, b, reach, min_radius)))
        else:  # the side road starts on the main road's centre line
            roads.append(make(clothoid_path(rng, mid, b, reach, min_radius)))
    return roads


def _oblique(rng: np.random.Generator, width: int, height: int, tilt: float) -> np.ndarray:
    """A homography that squeezes one side of the frame by up to ``tilt`` (and shears it)."""
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    squeeze = rng.uniform(0.3, 1.0) * tilt
    side = int(rng.integers(4))  # which edge recedes from the camera
    dst = src.copy()
    a, b = side, (side + 1) % 4
    centre = (src[a] + src[b]) / 2
    dst[a] = src[a] + (centre - src[a]) * squeeze
    dst[b] = src[b] + (centre - src[b]) * squeeze
    dst += rng.normal(0, 0.01 * min(width, height), dst.shape).astype(np.float32)
    # Zoom in so that the squeezed edge still fills the frame (less mirrored border).
    zoom = 1.0 / (1.0 - squeeze)
    mid = np.float32([width / 2, height / 2])
    dst = (dst - mid) * zoom + mid
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def oblique_lanes(rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Half the tiles seen obliquely (up to ~12 % squeeze of the far edge)."""
    if rng.random() < 0.5:
        return image, masks
    h, w = image.shape[:2]
    return homography_pair(image, masks, _oblique(rng, w, h, 0.12))


def tilted_street(rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Roll (+-8 deg), yaw/pitch (a small keystone) and a slight zoom of a street frame."""
    h, w = image.shape[:2]
    roll = rng.uniform(-8.0, 8.0)
    zoom = rng.uniform(1.02, 1.1)
    rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), roll, zoom), [0, 0, 1]])
    keystone = _oblique(rng, w, h, 0.06) if rng.random() < 0.6 else np.eye(3)
    return homography_pair(image, masks, keystone @ rot)
