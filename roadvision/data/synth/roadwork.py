"""Street-level roadwork scenes: a pinhole camera over a ground plane, painted far to near.

Geometry is physical so that size cues are honest: a ground point at lateral offset X and
distance Z (metres) projects to ``x = cx + f X / Z``, ``y = horizon + f (h_cam - Y) / Z``. The
ground (road, paint, kerb, verge) is computed per pixel from its inverse projection, vectorised;
everything standing on the ground (buildings, trees, vehicles, signs, cones, workers) is a flat
sprite drawn with OpenCV at its distance, far to near, so near objects occlude far ones.

Light and weather act in one place, ``Env.shade`` (``_street.py``): ambient daylight and tint
(day, dusk, night), headlights that light near objects at night (retroreflective paint, cone
bands and vest stripes light up much more), and fog/rain/snow haze that fades colours with
distance. Rain streaks, snow flakes and glow around lights are drawn over the finished frame.
The sprites are in ``_sprites.py``.

Positives (label 1) hold at least one piece of roadwork equipment (cones, drums, barriers, arrow
boards, work signs, workers in hi-vis); negatives hold none but share colours with them on purpose
(orange vehicles, orange bins, warning signs that are not roadwork signs, pedestrians in orange),
so that "any orange pixel" is not a shortcut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from roadvision.data.contract import VOCABULARIES
from roadvision.data.synth import _raster as R
from roadvision.data.synth import _sprites as S
from roadvision.data.synth._street import Camera, Env, apply_camera, make_env, weather_overlay
from roadvision.data.synth.cities import City
from roadvision.data.synth.textures import _detail, smooth_noise

__all__ = ["RoadworkSample", "render_roadwork", "DAYTIME_P", "EQUIPMENT"]

#: Daytime mix over VOCABULARIES["daytime"] (day, night, dusk).
DAYTIME_P = (0.62, 0.22, 0.16)
#: Share of positives (label 1).
POSITIVE_P = 0.5
EQUIPMENT = ("cone", "drum", "barrier", "arrow_board", "sign", "worker")


@dataclass
class RoadworkSample:
    image: np.ndarray  # HxWx3 uint8 RGB
    label: int  # 1 = active work zone
    meta: dict  # weather, daytime, scene, text (never NULL here) + objects, difficulty


# --------------------------------------------------------------------------------------------
# scene layout
# --------------------------------------------------------------------------------------------
@dataclass
class _Road:
    lanes: int
    lane_w: float
    left: float  # road edge offsets from the centre line reference (m), left < 0 < right
    right: float
    shoulder: float
    sidewalk: float  # 0 = none
    centre_style: str  # solid|double|dashed
    edge_lines: bool
    dash: tuple[float, float]
    paint_w: float
    wet: bool
    boundaries: list[tuple[float, str, bool]] = field(default_factory=list)  # x, kind, yellow


def _make_road(rng, city: City, scene: str, weather: str) -> _Road:
    lanes = {"highway": int(rng.integers(3, 5)), "urban": int(rng.integers(2, 4)),
             "industrial": 2, "residential": 2, "rural": 2}[scene]
    lane_w = city.lane_width_m * rng.uniform(0.95, 1.08)
    ego = int(rng.integers(lanes))  # the camera drives in lane `ego`, counted from the left
    left = -(ego + 0.5) * lane_w
    right = left + lanes * lane_w
    centre_style = {"double_yellow": "double", "yellow": "solid", "yellow_dashed": "dashed",
                    "white_dashed": "dashed", "white": "solid"}[city.centre_line]
    yellow_centre = "yellow" in city.centre_line
    sidewalk = rng.uniform(2.0, 4.0) if scene in ("urban", "residential") else 0.0
    road = _Road(lanes, lane_w, left, right, rng.uniform(0.3, 1.2) if scene != "urban" else 0.3,
                 sidewalk, centre_style, rng.random() < city.edge_line_p or scene == "highway",
                 tuple(v * rng.uniform(0.9, 1.1) for v in city.dash_m), city.paint_width_m * 1.1,
                 weather in ("rainy",) or (weather == "snowy" and rng.random() < 0.5))
    # Two-way roads split lanes around the centre line; highways are one-way carriageways.
    split = lanes // 2 if scene != "highway" else 0
    for k in range(1, lanes):
        x = left + k * lane_w
        if k == split:
            road.boundaries.append((x, centre_style, yellow_centre))
        else:
            road.boundaries.append((x, "dashed", False))
    if road.edge_lines:
        road.boundaries += [(left, "solid", scene == "highway" and yellow_centre),
                            (right, "solid", False)]
    return road


# --------------------------------------------------------------------------------------------
# the ground: sky, road, paint, kerb and verge per pixel
# --------------------------------------------------------------------------------------------
def _ground(rng, cam: Camera, road: _Road, city: City, env: Env, scene: str,
            detail_of=_detail) -> np.ndarray:
    H, W = cam.height, cam.width
    img = np.empty((H, W, 3), np.float32)
    hz = int(np.clip(np.ceil(cam.horizon), 0, H))
    # Sky: gradient from zenith to horizon, clouds for overcast weather.
    t = np.linspace(0.0, 1.0, max(hz, 1), dtype=np.float32)[:, None, None]
    sky = np.asarray(city.sky, np.float32)
    if env.weather != "clear":
        grey = {"cloudy": 175, "rainy": 130, "foggy": 200, "snowy": 200}[env.weather]
        sky = sky * 0.3 + grey * 0.7
    if env.daytime == "dusk":
        top, bottom = sky * 0.6, np.float32([250, 150, 90])
    else:
        top, bottom = sky * 0.85, sky * 0.6 + 255 * 0.4
    sky_img = top + (bottom - top) * t ** 1.5
    if env.weather in ("cloudy", "rainy", "snowy") or rng.random() < 0.3:
        clouds = smooth_noise(rng, max(hz, 1), W, max(W / 6, 4))[..., None]
        sky_img = sky_img * (1.0 + 0.12 * clouds)
    sky_img = sky_img * env.tint * {"day": 1.0, "dusk": 0.75, "night": 0.06}[env.daytime]
    if env.daytime == "night":
        sky_img += np.float32([6, 8, 16])
    img[:hz] = sky_img[:hz] if hz else img[:hz]
    if hz >= H:
        return img

    # Ground: inverse projection of every pixel below the horizon.
    ys = np.arange(hz, H, dtype=np.float32) + 0.5
    xs = np.arange(W, dtype=np.float32) + 0.5
    z = (cam.f * cam.h / np.maximum(ys - cam.horizon, 0.25))[:, None]  # (h, 1)
    z = np.minimum(z, 5000.0)
    x = (xs[None, :] - cam.cx) * z / cam.f - cam.curve * z * z  # (h, W), relative to road
    px = z / cam.f  # metres per pixel across
    pz = z * z / (cam.f * cam.h)  # metres per pixel along the road

    def band(lo, hi):  # anti-aliased coverage of lo < x < hi
        return np.clip(np.minimum(x - lo, hi - x) / px + 0.5, 0.0, 1.0)

    asphalt = np.asarray(city.asphalt, np.float32) * rng.uniform(0.9, 1.1)
    verge = np.asarray(city.verge, np.float32) * rng.uniform(0.9, 1.1)
    if scene in ("urban", "industrial"):
        verge = verge * 0.3 + np.float32([120, 118, 112]) * 0.7  # paved forecourts
    kerb_c = np.float32([165, 165, 160])
    walk_c = np.float32([150, 148, 142]) * rng.uniform(0.85, 1.1)
    tex = detail_of("gravel" if scene != "rural" else city.verge_texture)
    th, tw = tex.shape
    # Fine grain: 400 texture px per metre (a stone is a few cm), faded with distance where a
    # pixel would average many stones anyway (and would alias if sampled).
    mx = np.mod(x * 400.0, tw).astype(np.float32)
    my = np.mod(np.broadcast_to(z * 400.0, x.shape), th).astype(np.float32)
    detail = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    detail *= 0.6 / (1.0 + px * 150.0)
    vtex = detail_of(city.verge_texture)
    vdetail = cv2.remap(vtex, np.mod(x * 25.0, vtex.shape[1]).astype(np.float32),
                        np.mod(np.broadcast_to(z * 25.0, x.shape), vtex.shape[0]).astype(
                            np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    vdetail *= 1.0 / (1.0 + z / 8.0)

    road_lo, road_hi = road.left - road.shoulder, road.right + road.shoulder
    on_road = band(road_lo, road_hi)
    out = verge[None, None] * (1 + 0.25 * vdetail[..., None])
    if road.sidewalk:
        kerb = 0.25
        walk = np.maximum(band(road_hi, road_hi + road.sidewalk),
                          band(road_lo - road.sidewalk, road_lo))[..., None]
        out = out * (1 - walk) + walk_c * (1 + 0.08 * detail[..., None]) * walk
        kerbs = np.maximum(band(road_hi, road_hi + kerb), band(road_lo - kerb, road_lo))
        out = out * (1 - kerbs[..., None]) + kerb_c * kerbs[..., None]
    if env.weather == "snowy":
        snow = np.clip(0.55 + 0.4 * vdetail, 0, 1)[..., None] * (1 - on_road[..., None])
        out = out * (1 - snow) + np.float32([232, 236, 242]) * snow
    tar = asphalt * (1 + 0.18 * detail[..., None])
    if road.wet:
        tar = tar * 0.7
    out = out * (1 - on_road[..., None]) + tar * on_road[..., None]

    # Paint: longitudinal lines; dashes use an anti-aliased along-road coverage as well.
    paint = np.zeros(x.shape, np.float32)
    yellow = np.zeros(x.shape, np.float32)
    phase = rng.uniform(0, sum(road.dash))
    period = sum(road.dash)
    dash_on = np.clip((road.dash[0] / 2 - np.abs(np.mod(z + phase, period) - road.dash[0] / 2))
                      / pz + 0.5, 0.0, 1.0)
    w = road.paint_w
    for bx, kind, is_yellow in road.boundaries:
        if kind == "double":
            cov = np.maximum(band(bx - 0.12 - w, bx - 0.12), band(bx + 0.12, bx + 0.12 + w))
        else:
            cov = band(bx - w / 2, bx + w / 2)
            if kind == "dashed":
                cov = cov * dash_on
        paint = np.maximum(paint, cov)
        if is_yellow:
            yellow = np.maximum(yellow, cov)
    wear = np.clip(1.0 - city.wear * (0.6 + 0.5 * smooth_noise(rng, *x.shape, 24)), 0.1, 1.0)
    paint *= wear
    white = np.asarray(city.white, np.float32)
    col = white * (1 - yellow[..., None]) + np.asarray(city.yellow, np.float32) * yellow[..., None]
    out = out * (1 - paint[..., None]) + col * paint[..., None]

    # Light and haze per pixel; paint is retroreflective.
    light = env.light(z, x, 0.6 * paint)[..., None]
    out = out * env.tint * light
    if road.wet and env.daytime != "day":  # wet asphalt mirrors the dark sky, glossy patches
        out *= 0.85
    fade = np.exp(-z / env.visibility)[..., None]
    img[hz:] = out * fade + env.fog * (1 - fade)
    return img


# --------------------------------------------------------------------------------------------
# the scene
# --------------------------------------------------------------------------------------------
def _choice(rng, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def render_roadwork(rng: np.random.Generator, city: City, width: int, height: int,
                    label: int | None = None, *, detail=_detail, camera=None) -> RoadworkSample:
    """One street scene; ``meta`` holds the true weather/daytime/scene and a caption.

    ``detail`` (texture name -> zero-mean detail map) and ``camera`` (``apply_camera``'s
    signature) replace the ground's texture source and the camera (scene families).

    ``label`` 1 renders a work zone, 0 none, None draws it (``POSITIVE_P``).
    """
    label = int(rng.random() < POSITIVE_P) if label is None else int(label)
    weather = _choice(rng, VOCABULARIES["weather"], np.asarray(city.weather_p) /
                      sum(city.weather_p))
    daytime = _choice(rng, VOCABULARIES["daytime"], DAYTIME_P)
    scene = _choice(rng, VOCABULARIES["scene"], np.asarray(city.scene_p) / sum(city.scene_p))
    env = make_env(rng, city, weather, daytime)
    f = width * rng.uniform(0.75, 1.1)
    cam = Camera(width, height, f, width * rng.uniform(0.42, 0.58),
                  height * rng.uniform(0.36, 0.52), rng.uniform(1.25, 1.7),
                  rng.uniform(-0.004, 0.004) if rng.random() < 0.4 else 0.0)
    road = _make_road(rng, city, scene, weather)
    img = _ground(rng, cam, road, city, env, scene, detail)
    glow = np.zeros_like(img)
    painter = S.Painter(img, glow, env, rng)
    items: list[S.Item] = []
    z_near, z_far = cam.z_near, min(250.0, env.visibility * 3 + 30)
    road_lo, road_hi = road.left - road.shoulder, road.right + road.shoulder
    edge_r = road_hi + (road.sidewalk or 0.0)
    edge_l = road_lo - (road.sidewalk or 0.0)

    # Where the work zone will be (drawn first so traffic can keep clear of it).
    zone = None
    if label:
        difficulty = _choice(rng, ("easy", "normal", "distant"), (0.35, 0.45, 0.2))
        z0 = {"easy": rng.uniform(max(z_near, 6), 18), "normal": rng.uniform(max(z_near, 10), 40),
              "distant": rng.uniform(40, 90)}[difficulty]
        # No piece of equipment so far away that a cone would be under 4 px tall: a positive
        # must stay a positive at small image sizes.
        z_cap = f * 0.72 / 4.0
        zone = (difficulty, min(z0, z_cap * 0.8), 1 if rng.random() < 0.65 else -1)

    def add(z, x, kind, draw, equipment=False):
        if zone is not None and kind in ("vehicle", "orange_vehicle") and z < zone[1] + 40 and \
                (x - (road.left + road.right) / 2) * zone[2] > -road.lane_w:
            return  # would hide the work zone: positives must show their equipment
        if z > z_near * 0.8:
            items.append(S.Item(float(z), float(x), draw, kind, equipment))

    # --- background: buildings, trees, lamps --------------------------------------------------
    builds = []
    if scene in ("urban", "residential", "industrial"):
        for side, face in ((1, edge_r + rng.uniform(0.5, 6)), (-1, edge_l - rng.uniform(0.5, 6))):
            z = rng.uniform(z_near * 0.5, 10)
            while z < z_far:
                length = {"urban": rng.uniform(10, 30), "residential": rng.uniform(8, 14),
                          "industrial": rng.uniform(25, 60)}[scene]
                h = {"urban": rng.uniform(8, 30), "residential": rng.uniform(5, 9),
                     "industrial": rng.uniform(6, 12)}[scene]
                # Mostly the city's facade colour (brightness varies more than hue), so that
                # the palette is part of what makes a held-out city look new.
                colour = (np.asarray(city.building) * rng.uniform(0.8, 1.15)
                          * rng.uniform(0.92, 1.08, 3))
                if scene == "industrial":
                    colour = np.asarray((150, 155, 160)) * rng.uniform(0.8, 1.1)
                builds.append((side, face + side * rng.uniform(0, 3), z, z + length, h,
                               rng.uniform(8, 15), colour, scene != "industrial"))
                z += length + rng.uniform(0.5, 8 if scene != "residential" else 12)
    for spec in builds:
        side, xf, z0, z1, h, d, colour, windows = spec
        add(max(z0, z_near * 0.8) + 1e-3 + (z1 - z0) / 2 + 1000, xf,
            "building", (lambda sp=spec: lambda it, x, y, s: S.building(
                painter, it, cam, sp[0], sp[1], max(sp[2], z_near * 0.85), sp[3], sp[4], sp[5],
                sp[6], sp[7]))())
    trees = {"rural": 14, "highway": 8, "residential": 8, "urban": 3, "industrial": 2}[scene]
    for _ in range(rng.poisson(trees * city.tree_density * 2 + 1)):
        side = rng.choice([-1, 1])
        x = (edge_r + rng.uniform(1, 12)) if side > 0 else (edge_l - rng.uniform(1, 12))
        add(rng.uniform(z_near, z_far), x, "tree", lambda it, px, py, s: S.tree(painter, it, px,
                                                                              py, s))
    if scene in ("urban", "highway", "residential", "industrial"):
        spacing = rng.uniform(20, 40)
        side = rng.choice([-1, 1])
        for z in np.arange(rng.uniform(z_near, z_near + spacing), z_far, spacing):
            x = road_hi + 0.5 if side > 0 else road_lo - 0.5
            add(z, x, "lamp", (lambda sd=side: lambda it, px, py, s: S.lamp_post(
                painter, it, px, py, s, sd))())

    # --- traffic ---------------------------------------------------------------------------
    lanes_x = [road.left + (k + 0.5) * road.lane_w for k in range(road.lanes)]
    split = road.lanes // 2 if scene != "highway" else 0
    for _ in range(int(rng.poisson(rng.uniform(0.5, 4)))):
        k = int(rng.integers(road.lanes))
        oncoming = k < split
        body = S.CAR_COLOURS[int(rng.integers(len(S.CAR_COLOURS)))]
        kind = _choice(rng, ("car", "van", "truck", "bus"), (0.7, 0.15, 0.1, 0.05))
        z = rng.uniform(max(z_near, 7), 90)
        add(z, lanes_x[k], "vehicle", (lambda b=body, kd=kind, fc=-1 if oncoming else 1:
                                       lambda it, px, py, s: S.vehicle(painter, it, px, py, s, b,
                                                                      kd, facing=fc))())
    if scene in ("urban", "residential") and rng.random() < 0.6:  # parked cars by the kerb
        for _ in range(int(rng.integers(1, 5))):
            body = S.CAR_COLOURS[int(rng.integers(len(S.CAR_COLOURS)))]
            side = rng.choice([-1, 1])
            add(rng.uniform(z_near, 70), (road.right - 1.0) if side > 0 else (road.left + 1.0),
                "vehicle", (lambda b=body: lambda it, px, py, s: S.vehicle(
                    painter, it, px, py, s, b))())

    # --- distractors (always possible; most negatives get at least one) -----------------------
    distractors = []
    n_dis = int(rng.poisson(1.4 if label else 2.2))
    if not label and n_dis == 0 and rng.random() < 0.6:
        n_dis = 1
    for _ in range(n_dis):
        kind = _choice(rng, ("orange_vehicle", "sign", "bin", "pedestrian", "bollard"),
                       (0.3, 0.3, 0.15, 0.15, 0.1))
        distractors.append(kind)
        z = rng.uniform(max(z_near, 5), 60)
        side = rng.choice([-1, 1])
        kerb_x = (road_hi + rng.uniform(0.3, 1.5)) if side > 0 else (road_lo - rng.uniform(0.3,
                                                                                         1.5))
        if kind == "orange_vehicle":
            body = S.ORANGES[int(rng.integers(len(S.ORANGES)))]
            kd = _choice(rng, ("car", "van", "truck", "bus"), (0.4, 0.2, 0.3, 0.1))
            add(z, lanes_x[int(rng.integers(road.lanes))], "orange_vehicle",
                (lambda b=body, vk=kd: lambda it, px, py, s: S.vehicle(painter, it, px, py, s,
                                                                      b, vk))())
        elif kind == "sign":
            spec = _choice(rng, [("circle", (245, 245, 245), (210, 30, 30), "text"),
                                 ("octagon", (200, 25, 25), (240, 240, 240), "text"),
                                 ("rectangle", (30, 80, 170), (240, 240, 240), "text"),
                                 ("rectangle", (20, 110, 60), (240, 240, 240), "text"),
                                 ("diamond", (245, 205, 30), (20, 20, 20), "curve")])
            add(z, kerb_x, "sign", (lambda sp=spec: lambda it, px, py, s: S.sign_shape(
                painter, it, px, py, s, sp[0], sp[1], sp[2], sp[3]))())
        elif kind == "bin":
            colour = _choice(rng, [(255, 120, 20), (40, 110, 50), (60, 60, 65), (30, 70, 150)])
            add(z, kerb_x, "bin", (lambda c=colour: lambda it, px, py, s: S.rect(
                painter.img, px - 0.3 * s, py - 1.05 * s, px + 0.3 * s, py,
                painter.c(c, it)))())
        elif kind == "pedestrian":
            torso = _choice(rng, [(255, 130, 30), (40, 60, 120), (150, 30, 40), (220, 220, 215),
                                  (60, 60, 60)])
            add(z, kerb_x + side * 1.0, "pedestrian", (lambda t=torso: lambda it, px, py, s:
                                                       S.person(painter, it, px, py, s, t))())
        else:
            colour = _choice(rng, [(240, 190, 30), (250, 130, 30), (200, 200, 200)])
            for k in range(int(rng.integers(2, 5))):
                add(z + 1.5 * k, kerb_x, "bollard", (lambda c=colour: lambda it, px, py, s: S.rect(
                    painter.img, px - 0.07 * s, py - 0.9 * s, px + 0.07 * s, py,
                    painter.c(c, it)))())

    # --- the work zone ---------------------------------------------------------------------
    equipment: list[str] = []
    difficulty = "none"
    if zone is not None:
        difficulty, z0, side = zone
        edge = road.right if side > 0 else road.left
        closed_lane = rng.random() < 0.5
        count = {"easy": int(rng.integers(4, 12)), "normal": int(rng.integers(2, 9)),
                 "distant": int(rng.integers(1, 4))}[difficulty]
        kinds = rng.choice(EQUIPMENT, size=count, p=(0.4, 0.14, 0.14, 0.06, 0.12, 0.14))
        if difficulty != "distant" and "cone" not in kinds and rng.random() < 0.5:
            kinds = np.append(kinds, "cone")
        step = rng.uniform(3, 8)
        for j, kind in enumerate(kinds):
            kind = str(kind)
            equipment.append(kind)
            z = min(z0 + j * step * rng.uniform(0.5, 1.2), z_cap)
            taper = min(1.0, j / 4) if closed_lane else 0.0
            x = edge - side * (0.4 + taper * road.lane_w * 0.8) + rng.normal(0, 0.15)
            if kind in ("sign", "worker") and not closed_lane:
                x = edge + side * rng.uniform(0.3, 1.5)
            draw = {
                "cone": lambda it, px, py, s: S.cone(painter, it, px, py, s, city),
                "drum": lambda it, px, py, s: S.drum(painter, it, px, py, s, city),
                "barrier": (lambda wm=rng.uniform(1.2, 3.0): lambda it, px, py, s: S.barrier(
                    painter, it, px, py, s, city, wm))(),
                "arrow_board": lambda it, px, py, s: S.arrow_board(painter, it, px, py, s, city),
                "sign": lambda it, px, py, s: S.work_sign(painter, it, px, py, s, city),
                "worker": (lambda hat=_choice(rng, [(250, 250, 245), (255, 140, 20),
                                                    (245, 210, 40)]):
                           lambda it, px, py, s: S.person(painter, it, px, py, s, city.vest,
                                                         (50, 55, 70), True, hat))(),
            }[kind]
            add(z, x, kind, draw, equipment=True)
        if difficulty == "easy" and rng.random() < 0.3:  # a work truck with a beacon
            body = S.ORANGES[int(rng.integers(len(S.ORANGES)))] if rng.random() < 0.5 else (
                235, 235, 230)
            add(z0 + rng.uniform(5, 20), edge - side * road.lane_w * 0.5, "work_vehicle",
                (lambda b=body: lambda it, px, py, s: S.vehicle(painter, it, px, py, s, b, "truck",
                                                               beacon=True))(), True)
            equipment.append("work_vehicle")

    # --- paint far to near -----------------------------------------------------------------
    equipment_px = 0
    for it in sorted(items, key=lambda i: -i.z):
        if it.kind == "building":
            it.draw(it, 0.0, 0.0, 0.0)
            continue
        px, py = cam.project(it.x, 0.0, it.z)
        s = cam.f / it.z
        if px < -8 * s or px > width + 8 * s:
            continue
        if not it.equipment:
            it.draw(it, float(px), float(py), float(s))
            continue
        # Equipment: count the pixels it changes (in a box around it), so that the metadata
        # says how visible the work zone is (a few pixels for a distant cone).
        x0, x1 = int(max(px - 3 * s - 2, 0)), int(min(px + 3 * s + 3, width))
        y0, y1 = int(max(py - 3.5 * s - 2, 0)), int(min(py + 2, height))
        before = img[y0:y1, x0:x1].copy()
        it.draw(it, float(px), float(py), float(s))
        equipment_px += int((np.abs(img[y0:y1, x0:x1] - before).max(axis=-1) > 8).sum())

    img = weather_overlay(rng, img, glow, env, width, height)
    img = (camera or apply_camera)(rng, img, env)
    text = _caption(rng, label, equipment, distractors, scene, weather, daytime, city)
    meta = {"weather": weather, "daytime": daytime, "scene": scene, "text": text,
            "equipment": equipment, "distractors": distractors, "difficulty": difficulty,
            "equipment_px": equipment_px}
    return RoadworkSample(image=R.to_uint8(img), label=label, meta=meta)


def _count_words(n: int, word: str) -> str:
    names = {1: "a", 2: "two", 3: "three", 4: "four"}
    plural = word if n == 1 else (word + "es" if word.endswith("sh") else word + "s")
    if n == 1 and word[0] in "aeiou":
        return f"an {word}"
    return f"{names.get(n, 'several')} {plural}" if n > 1 else f"{names[1]} {word}"


def _caption(rng, label, equipment, distractors, scene, weather, daytime, city: City) -> str:
    if label:
        counts = {k: equipment.count(k) for k in dict.fromkeys(equipment)}
        cone_colour = "orange" if city.cone[1] > 80 else "red"
        words = {"cone": f"{cone_colour} cones", "drum": "drums", "barrier": "barrier",
                 "arrow_board": "arrow board", "sign": "work sign", "worker": "worker",
                 "work_vehicle": "work truck"}
        parts = []
        for kind, n in counts.items():
            if kind in ("cone", "drum"):
                parts.append(words[kind] if n > 1 else f"a {kind}")
            elif kind == "worker":
                parts.append(_count_words(n, "worker") + " in hi-vis vests" if n > 1
                             else "a worker in a hi-vis vest")
            else:
                parts.append(_count_words(n, words[kind]))
        parts = parts[:3]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        template = _choice(rng, ["work zone with {x}", "road works ahead: {x}",
                                 "construction on the {scene} road with {x}",
                                 "lane closed, {x}", "{x} on a {weather} {scene} street"])
        return _articles(template.format(x=listed, scene=scene, weather=weather))
    extras = {"orange_vehicle": "an orange vehicle", "sign": "a traffic sign",
              "bin": "a bin by the kerb", "pedestrian": "a pedestrian", "bollard": "bollards"}
    seen = [extras[d] for d in dict.fromkeys(distractors)][:2]
    base = _choice(rng, ["a {scene} road", "driving on a {scene} street", "{daytime} traffic on "
                         "a {scene} road", "a {weather} view of a {scene} road"])
    text = base.format(scene=scene, daytime=daytime, weather=weather)
    if seen:
        text += " with " + " and ".join(seen)
    return _articles(text)


def _articles(text: str) -> str:
    """'a urban road' -> 'an urban road'."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)
