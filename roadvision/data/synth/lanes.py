"""Aerial lane-marking tiles: road graph -> asphalt -> paint -> occluders -> camera.

Physical units first: the ground sample distance (GSD, 5-15 cm/px) converts metres into pixels,
so a 12 cm line is 1-3 px wide, dashes follow the city's metre pattern and lanes are 3-3.7 m.
Markings are drawn supersampled (4x, or 2x for very large tiles) into a class map; a pixel is a
lane pixel when at least half of it is covered by paint that wear has not removed and no
vehicle, tree or building hides it. The image shows exactly that paint (anti-aliased coverage),
so the mask and the pixels agree to the sub-pixel.

Taxonomy: each stroke carries a 12-class id (``LANE_CLASSES_12``) and a 4-class id
(``LANE_CLASSES``). The 4-class task is "longitudinal lane lines": double lines map to their
colour's solid class, yellow dashed to ``yellow_solid`` (the 4-class taxonomy has one yellow
class), and transverse or symbolic paint (crosswalks, stop lines, arrows, text) is background.
The same seed renders the same pixels for either taxonomy; only the mask differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from roadvision.data.synth import _raster as R
from roadvision.data.synth.cities import City
from roadvision.data.synth.textures import smooth_noise, texture_at_gsd, tinted

__all__ = ["LaneSample", "render_lanes", "LAYOUTS"]

#: Road layouts and their probabilities. Tiles without a road are common in real aerial data
#: (fields, roofs, car parks); together with roads that only clip a tile's corner they set the
#: background-to-lane ratio near the real 200-500:1 (about 0.3% lane pixels at 512 px).
LAYOUTS = {"none": 0.36, "straight": 0.25, "curved": 0.19, "intersection": 0.08,
           "t_junction": 0.12}

# 12-class ids (see contract.LANE_CLASSES_12) and their 4-class counterparts.
WS, WD, YS, YD, DWS, DYS, WSD, XWALK, STOP, ARROW, OTHER = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
TO4 = np.array([0, 1, 2, 3, 3, 1, 3, 0, 0, 0, 0, 0], np.uint8)  # 12-class id -> 4-class id
# Which 12-class strokes are painted yellow. white_solid_dashed (7) carries its 4-class part in
# a separate map so that the solid half is white_solid and the dashed half white_dashed.
YELLOW = np.zeros(12, bool)
YELLOW[[YS, YD, DYS]] = True

CAR_COLOURS = ((235, 235, 235), (20, 20, 22), (150, 152, 158), (90, 92, 96), (160, 30, 30),
               (30, 60, 140), (40, 70, 50), (210, 190, 60), (120, 80, 50))


@dataclass
class LaneSample:
    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray  # HxW uint8 class ids (4- or 12-class)
    meta: dict  # layout, gsd, scene/weather hints for the manifest


@dataclass
class _Road:
    centre: np.ndarray  # (N, 2) px, sampled every ~1 px
    lanes: int  # lanes per direction
    lane_w: float  # px
    half_w: float  # px, asphalt half width
    oneway: bool

    def frame(self, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point, unit tangent and unit normal at arc length ``s`` (px) from the start."""
        i = int(np.clip(round(s), 1, len(self.centre) - 2))
        t = self.centre[i + 1] - self.centre[i - 1]
        t = t / (np.hypot(*t) + 1e-9)
        return self.centre[i], t, np.array([-t[1], t[0]])


class _Paint:
    """Supersampled class maps plus a list of erase regions (junction boxes)."""

    def __init__(self, height: int, width: int, ss: int):
        self.ss = ss
        self.cls12 = np.zeros((height * ss, width * ss), np.uint8)
        self.part4 = np.zeros_like(self.cls12)  # explicit 4-class id where it differs from TO4
        self.lines: list[dict] = []  # every stroke as drawn: the ground-truth polylines

    def stroke(self, pts: np.ndarray, width_px: float, id12: int, id4: int | None = None):
        hi = pts * self.ss + (self.ss - 1) / 2  # pixel centres of the supersampled grid
        thick = max(1.0, width_px * self.ss)
        self.lines.append({"points": pts, "width_px": float(width_px), "id12": int(id12),
                           "id4": int(TO4[id12] if id4 is None else id4)})
        R.draw_polyline(self.cls12, hi, int(id12), thick)
        if id4 is not None:
            R.draw_polyline(self.part4, hi, int(id4), thick)

    def polygon(self, pts: np.ndarray, id12: int):
        R.draw_polygon(self.cls12, pts * self.ss + (self.ss - 1) / 2, int(id12))


def render_lanes(rng: np.random.Generator, city: City, width: int, height: int, *,
                 texture=texture_at_gsd, road_graph=None, camera=None,
                 gsd_m: float | None = None) -> LaneSample:
    """Render one aerial tile; the mask holds 12-class ids (use ``TO4``/meta for 4 classes).

    ``texture``, ``road_graph`` and ``camera`` replace one stage each (scene families,
    ``roadvision.data.synth.families``): the texture source (``texture_at_gsd``'s signature),
    the road builder (``_road_graph``'s) and the camera (``_camera``'s: image, ppm -> image, haze).
    """
    gsd = float(rng.uniform(0.05, 0.15))
    if gsd_m is not None:  # georeferenced tiles at a chosen GSD (synth.geotiff); same draws
        gsd = float(gsd_m)
    ppm = 1.0 / gsd  # pixels per metre
    ss = 4 if width * height <= 1 << 20 else 2
    area_m2 = width * height * gsd * gsd

    # --- ground ------------------------------------------------------------------------------
    ground = tinted(texture(rng, city.verge_texture, height, width, gsd),
                    city.verge, 0.16, rng, 0.12)
    ground *= 1.0 + 0.14 * smooth_noise(rng, height, width, 8 * ppm)[..., None]

    # --- roads -------------------------------------------------------------------------------
    layout = str(rng.choice(list(LAYOUTS), p=list(LAYOUTS.values())))
    roads = (road_graph or _road_graph)(rng, city, layout, width, height, ppm)
    road_mask = np.zeros((height, width), np.uint8)
    for road in roads:
        R.draw_polyline(road_mask, road.centre, 255, 2 * road.half_w)
    asphalt = tinted(texture(rng, "gravel", height, width, gsd, 2.0), city.asphalt,
                     0.10, rng, 0.10)
    asphalt *= 1.0 + 0.10 * smooth_noise(rng, height, width, 5 * ppm)[..., None]
    on_road = cv2.GaussianBlur(road_mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
    img = ground * (1 - on_road) + asphalt * on_road

    # --- paint -------------------------------------------------------------------------------
    paint = _Paint(height, width, ss)
    tile_wear = float(np.clip(city.wear * rng.uniform(0.4, 1.6), 0.0, 0.9))
    junctions = _paint_roads(rng, city, roads, paint, layout, ppm)
    if junctions is not None:
        erase = cv2.resize(junctions, paint.cls12.shape[::-1], interpolation=cv2.INTER_NEAREST)
        keep = paint.cls12 >= XWALK  # transverse paint lives inside/at the junction
        paint.cls12[(erase > 0) & ~keep] = 0
        paint.part4[erase > 0] = 0
    coverage = cv2.resize((paint.cls12 > 0).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_AREA)
    cls12 = R.block_max(paint.cls12, ss)
    part4 = R.block_max(paint.part4, ss)
    # Wear: a slow field fades paint, a second one opens gaps where the paint is gone.
    opacity = 1.0 - tile_wear * (0.55 + 0.45 * smooth_noise(rng, height, width, 3 * ppm))
    opacity -= tile_wear * 0.35 * rng.random((height, width), dtype=np.float32)
    gaps = smooth_noise(rng, height, width, 1.5 * ppm) > (0.95 - 0.55 * tile_wear)
    opacity = np.where(gaps, 0.0, np.clip(opacity, 0.0, 1.0)).astype(np.float32)
    alpha = coverage * opacity * rng.uniform(0.8, 0.95)
    colour = np.where(YELLOW[cls12][..., None], np.float32(city.yellow), np.float32(city.white))
    img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    labelled = (coverage >= 0.5) & (opacity >= 0.3)

    # --- shadows, buildings, vehicles, trees -------------------------------------------------
    occluded = np.zeros((height, width), np.uint8)
    shadow = np.zeros((height, width), np.uint8)
    sun = rng.uniform(0, 2 * np.pi)
    sun_vec = np.array([np.cos(sun), np.sin(sun)]) * ppm / np.tan(np.radians(rng.uniform(30, 70)))
    buildings = _buildings(rng, city, road_mask, width, height, ppm, area_m2)
    cars = _vehicles(rng, roads, ppm)
    trees = _trees(rng, city, roads, width, height, ppm, area_m2)
    for poly, h in [(b[0], b[2]) for b in buildings] + [(c[0], 1.5) for c in cars]:
        hull = cv2.convexHull(np.concatenate([poly, poly + sun_vec * h]).astype(np.float32))
        R.draw_polygon(shadow, hull[:, 0, :], 255)
    for centres, radii, h in trees:
        for (cx, cy), r in zip(centres, radii, strict=True):
            cv2.circle(shadow, (int(cx + sun_vec[0] * h), int(cy + sun_vec[1] * h)), int(r), 255,
                       -1, cv2.LINE_AA)
    dark = rng.uniform(0.45, 0.7)
    shade = cv2.GaussianBlur(shadow, (0, 0), 0.8).astype(np.float32)[..., None] / 255.0
    img *= 1.0 - (1.0 - dark) * shade

    for poly, roof, _h in buildings:
        R.draw_polygon(img, poly, roof, antialias=True)
        # Gable: one half of the roof a little darker, split along the long axis.
        mid = (poly[0] + poly[1]) / 2, (poly[2] + poly[3]) / 2
        half = np.array([mid[0], poly[1], poly[2], mid[1]])
        R.draw_polygon(img, half, tuple(0.8 * v for v in roof), antialias=True)
        R.draw_polygon(occluded, poly, 255)
    for poly, body in cars:
        R.draw_polygon(img, poly, body, antialias=True)
        windscreen = poly[0] + (poly[1] - poly[0]) * 0.62 + (poly[3] - poly[0]) * 0.12
        ws = np.array([windscreen, windscreen + (poly[1] - poly[0]) * 0.14,
                       windscreen + (poly[1] - poly[0]) * 0.14 + (poly[3] - poly[0]) * 0.76,
                       windscreen + (poly[3] - poly[0]) * 0.76])
        R.draw_polygon(img, ws, (35, 38, 45), antialias=True)
        R.draw_polygon(occluded, poly, 255)
    canopy_tex = texture(rng, "grass", height, width, gsd, 25.0)
    canopy = np.zeros((height, width), np.uint8)
    for centres, radii, _h in trees:
        for (cx, cy), r in zip(centres, radii, strict=True):
            cv2.circle(canopy, (int(cx), int(cy)), int(r), 255, -1, cv2.LINE_AA)
    if canopy.any():
        leaf = tinted(canopy_tex, (55, 80, 40), 0.3, rng, 0.15)
        a = canopy.astype(np.float32)[..., None] / 255.0
        img = img * (1 - a) + leaf * a
        occluded |= (canopy > 127).astype(np.uint8) * 255

    img, haze = (camera or _camera)(rng, img, ppm)

    mask12 = np.where(labelled & (occluded == 0), cls12, 0).astype(np.uint8)
    mask4 = np.where(part4 > 0, part4, TO4[mask12]).astype(np.uint8)
    mask4[mask12 == 0] = 0
    meta = {"layout": layout, "gsd_m": round(gsd, 4), "haze": haze, "mask4": mask4,
            "scene": _scene_for(layout, city, rng),
            # ground-truth vectors (pixel coordinates, pixel centres at integers) and the
            # junction boxes where longitudinal paint was erased
            "lines": paint.lines, "junctions": junctions}
    return LaneSample(image=R.to_uint8(img), mask=mask12, meta=meta)


def _camera(rng: np.random.Generator, img: np.ndarray, ppm: float) -> tuple[np.ndarray, float]:
    """Exposure, colour cast, haze, optics, sensor noise; returns the image and the haze."""
    height, width = img.shape[:2]
    img *= rng.lognormal(0.0, 0.12) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    haze = float(rng.uniform(0.05, 0.35)) if rng.random() < 0.35 else 0.0
    if haze:
        field = haze * (0.75 + 0.25 * smooth_noise(rng, height, width, 30 * ppm))[..., None]
        img = img * (1 - field) + np.float32([200, 205, 212]) * field
    gamma = rng.uniform(0.85, 1.15)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
    img += rng.normal(0, rng.uniform(1.5, 4.0), img.shape).astype(np.float32)
    return img, haze


def _scene_for(layout: str, city: City, rng: np.random.Generator) -> str:
    if layout == "none":
        return "rural"
    return str(rng.choice(["urban", "highway", "residential", "rural", "industrial"],
                          p=list(city.scene_p)))


def _road_graph(rng, city: City, layout: str, width: int, height: int, ppm: float) -> list[_Road]:
    """Centre lines for the layout; lines run past the tile so they leave it at the border."""
    reach = float(np.hypot(width, height))
    # The road passes anywhere through the tile, sometimes only through a corner.
    centre = np.array([width, height]) * rng.uniform(0.0, 1.0, 2)

    def make(pts: np.ndarray) -> _Road:
        lanes = 1 if rng.random() < 0.75 else 2
        lane_w = city.lane_width_m * ppm * rng.uniform(0.95, 1.05)
        half = lanes * lane_w + rng.uniform(0.1, 0.7) * ppm
        return _Road(R.resample(pts, 1.0), lanes, lane_w, half, oneway=rng.random() < 0.1)

    def through(angle: float, at: np.ndarray) -> np.ndarray:
        d = np.array([np.cos(angle), np.sin(angle)])
        return np.stack([at - d * reach, at + d * reach])

    a = rng.uniform(0, np.pi)
    if layout == "none":
        return []
    if layout == "straight":
        roads = [make(through(a, centre))]
    elif layout == "curved":
        d = np.array([np.cos(a), np.sin(a)])
        n = np.array([-d[1], d[0]])
        bend = rng.uniform(0.3, 0.9) * reach * rng.choice([-1, 1])
        roads = [make(R.bezier(centre - d * reach, centre + n * bend, centre + d * reach, 200))]
    else:
        b = a + np.pi / 2 + rng.uniform(-0.35, 0.35)
        roads = [make(through(a, centre))]
        db = np.array([np.cos(b), np.sin(b)])
        if layout == "intersection":
            roads.append(make(through(b, centre)))
        else:  # t_junction: the side road starts at the through road's centre line
            roads.append(make(np.stack([centre, centre + db * reach])))
    # Large tiles (hundreds of metres) cross more than one street.
    extent_m = max(width, height) / ppm
    for _ in range(int(extent_m // 120)):
        at = np.array([width, height]) * rng.uniform(0.05, 0.95, 2)
        roads.append(make(through(rng.uniform(0, np.pi), at)))
    return roads


def _centre_style(rng, city: City) -> str:
    if rng.random() < 0.12:
        return str(rng.choice(["double_white", "white_solid_dashed", "yellow_dashed", "white"]))
    return city.centre_line


def _paint_roads(rng, city: City, roads: list[_Road], paint: _Paint, layout: str,
                 ppm: float) -> np.ndarray | None:
    """Paint every road's lines; returns the junction erase mask (or None)."""
    dash_len, gap_len = (v * ppm * rng.uniform(0.9, 1.1) for v in city.dash_m)
    for road in roads:
        # Physical width, kept within 1-3 px: a 10 cm line at 15 cm/px still shows as a 1 px
        # line (a 1-px label, not a sub-pixel one that the coverage test would drop).
        w = float(np.clip(city.paint_width_m * ppm * rng.uniform(0.9, 1.15), 1.0, 3.0))
        c = road.centre

        def dashed(pts, id12, id4=None, w=w):
            for piece in R.dashes(pts, dash_len, gap_len, rng.uniform(0, dash_len + gap_len)):
                paint.stroke(piece, w, id12, id4)

        if road.oneway:
            dashed(c, WD)
        else:
            style = _centre_style(rng, city)
            sep = 0.5 * w + 0.1 * ppm
            if style == "double_yellow":
                paint.stroke(R.offset(c, -sep), w, DYS)
                paint.stroke(R.offset(c, sep), w, DYS)
            elif style == "double_white":
                paint.stroke(R.offset(c, -sep), w, DWS)
                paint.stroke(R.offset(c, sep), w, DWS)
            elif style == "white_solid_dashed":
                paint.stroke(R.offset(c, -sep), w, WSD, WS)
                dashed(R.offset(c, sep), WSD, WD)
            elif style == "yellow":
                paint.stroke(c, w, YS)
            elif style == "yellow_dashed":
                dashed(c, YD)
            elif style == "white_dashed":
                dashed(c, WD)
            else:
                paint.stroke(c, w, WS)
        for j in range(1, road.lanes):
            for side in (-1, 1):
                dashed(R.offset(c, side * j * road.lane_w), WD)
        if rng.random() < city.edge_line_p:
            for side in (-1, 1):
                paint.stroke(R.offset(c, side * road.lanes * road.lane_w), w, WS)
        if rng.random() < 0.25:  # painted text/symbols in a lane ("SLOW", bike logos)
            _glyphs(rng, road, paint, ppm, w)
    if layout not in ("intersection", "t_junction") or len(roads) < 2:
        return None
    return _junction(rng, roads[0], roads[1], paint, ppm, layout)


def _glyphs(rng, road: _Road, paint: _Paint, ppm: float, w: float) -> None:
    s0 = rng.uniform(0.2, 0.8) * len(road.centre)
    lane = rng.integers(road.lanes) + 0.5
    side = rng.choice([-1, 1])
    for k in range(int(rng.integers(2, 5))):
        p, t, n = road.frame(s0 + k * 1.6 * ppm)
        base = p + n * side * lane * road.lane_w
        for _ in range(3):
            u = rng.uniform(-0.6, 0.6, 2) * ppm
            v = rng.uniform(-0.5, 0.5, 2) * ppm
            pts = np.stack([base + t * u[0] + n * v[0], base + t * u[1] + n * v[1]])
            paint.stroke(pts, max(w, 0.15 * ppm), OTHER)


def _junction(rng, main: _Road, side: _Road, paint: _Paint, ppm: float, layout: str) -> np.ndarray:
    """Junction box erase mask, plus stop lines, crosswalks and arrows on each approach."""
    h, w = paint.cls12.shape[0] // paint.ss, paint.cls12.shape[1] // paint.ss
    box_a = np.zeros((h, w), np.uint8)
    box_b = np.zeros((h, w), np.uint8)
    R.draw_polyline(box_a, main.centre, 255, 2 * main.half_w + 1.5 * ppm)
    R.draw_polyline(box_b, side.centre, 255, 2 * side.half_w + 1.5 * ppm)
    box = box_a & box_b
    # The crossing point: where the side road starts (T) or the middle of both lines (X).
    crossing = side.centre[0] if layout == "t_junction" else main.centre[len(main.centre) // 2]
    arms = []
    for road, other in ((main, side), (side, main)):
        k = int(np.argmin(np.hypot(*(road.centre - crossing).T)))
        for direction in (-1, 1):
            if layout == "t_junction" and road is side and direction == -1:
                continue
            arms.append((road, other, k, direction))
    wide = 0.45 * ppm * rng.uniform(0.7, 1.1)
    for road, other, k, direction in arms:
        clear = other.half_w + 1.0 * ppm
        s_cross = k + direction * clear
        if rng.random() < 0.6:  # crosswalk: stripes along the road, across its full width
            length = 3.0 * ppm
            p0, t, n = road.frame(s_cross)
            p1, _, _ = road.frame(s_cross + direction * length)
            for v in np.arange(-road.half_w + 0.4 * ppm, road.half_w - 0.2 * ppm, 1.1 * ppm):
                paint.stroke(np.stack([p0 + n * v, p1 + n * v]), 0.5 * ppm, XWALK)
            clear += length + 1.0 * ppm
        p, t, n = road.frame(k + direction * clear)
        inbound = -direction  # right-hand traffic: inbound lanes on this side of the centre
        stop = np.stack([p, p + n * inbound * road.lanes * road.lane_w])
        paint.stroke(stop, wide, STOP)
        if rng.random() < 0.5:
            for lane in range(road.lanes):
                q, t2, n2 = road.frame(k + direction * (clear + rng.uniform(3, 8) * ppm))
                _arrow(paint, q + n2 * inbound * (lane + 0.5) * road.lane_w, -direction * t2,
                       n2, ppm)
    return box


def _arrow(paint: _Paint, tip_base: np.ndarray, t: np.ndarray, n: np.ndarray, ppm: float):
    """A straight-ahead arrow pointing along ``t`` (shaft 4 m, head 1.2 m x 0.9 m)."""
    tail = tip_base - t * 4.0 * ppm
    paint.stroke(np.stack([tail, tip_base]), 0.18 * ppm, ARROW)
    head = np.stack([tip_base + t * 1.2 * ppm, tip_base + n * 0.45 * ppm,
                     tip_base - n * 0.45 * ppm])
    paint.polygon(head, ARROW)


def _rect(centre, t, n, length, width) -> np.ndarray:
    """Corners of a rectangle (rear-left, front-left, front-right, rear-right)."""
    lt, wn = t * length / 2, n * width / 2
    return np.stack([centre - lt - wn, centre + lt - wn, centre + lt + wn, centre - lt + wn])


def _vehicles(rng, roads: list[_Road], ppm: float) -> list[tuple[np.ndarray, tuple]]:
    cars = []
    traffic = rng.uniform(0.0, 1.2)
    for road in roads:
        length_m = len(road.centre) / ppm
        for _ in range(rng.poisson(traffic * length_m / 60)):
            s = rng.uniform(0, len(road.centre))
            p, t, n = road.frame(s)
            lane = rng.integers(road.lanes) + 0.5
            side = rng.choice([-1, 1])
            parked = rng.random() < 0.25
            off = (road.half_w - 1.1 * ppm) if parked else lane * road.lane_w
            size = rng.choice(3, p=[0.8, 0.13, 0.07])
            length, width = ((4.5, 1.8), (5.5, 2.1), (10.0, 2.5))[size]
            c = p + n * side * off
            heading = t if side > 0 else -t
            colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
            cars.append((_rect(c, heading, np.array([-heading[1], heading[0]]),
                               length * ppm, width * ppm), colour))
    return cars


def _trees(rng, city: City, roads: list[_Road], width, height, ppm, area_m2):
    trees = []
    for _ in range(rng.poisson(city.tree_density * area_m2 / 350)):
        if roads and rng.random() < 0.6:  # street trees line the kerb and overhang the road
            road = roads[int(rng.integers(len(roads)))]
            p, _, n = road.frame(rng.uniform(0, len(road.centre)))
            centre = p + n * rng.choice([-1, 1]) * (road.half_w + rng.uniform(0.5, 5) * ppm)
        else:
            centre = rng.uniform(0, 1, 2) * [width, height]
        radius = rng.uniform(1.8, 4.5) * ppm
        k = int(rng.integers(3, 7))
        centres = centre + rng.normal(0, radius * 0.4, (k, 2))
        radii = radius * rng.uniform(0.5, 0.85, k)
        trees.append((centres, radii, rng.uniform(5, 15)))
    return trees


def _buildings(rng, city: City, road_mask, width, height, ppm, area_m2):
    out = []
    for _ in range(rng.poisson(city.building_density * area_m2 / 500)):
        centre = rng.uniform(0, 1, 2) * [width, height]
        a = rng.uniform(0, np.pi)
        t, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        poly = _rect(centre, t, n, rng.uniform(8, 20) * ppm, rng.uniform(7, 14) * ppm)
        x0, y0 = np.clip(poly.min(0).astype(int), 0, [width, height])
        x1, y1 = np.clip(poly.max(0).astype(int) + 1, 0, [width, height])
        if x1 <= x0 or y1 <= y0 or road_mask[y0:y1, x0:x1].any():
            continue  # buildings stand beside roads, never on them
        roof = tuple(float(v) * rng.uniform(0.8, 1.15) for v in city.roof)
        out.append((poly, roof, rng.uniform(4, 15)))
    return out
