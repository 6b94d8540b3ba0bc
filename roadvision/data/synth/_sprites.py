"""Sprites of the street renderer: equipment, distractors, vehicles, buildings, trees.

Each sprite is drawn flat at its distance with OpenCV, from a base point on the ground (px, py)
and a scale ``s`` in pixels per metre, so sizes are physical (a cone is 0.72 m tall, a worker
1.75 m). Colours go through ``Painter.c`` (the environment's light and haze), and
retroreflective parts (cone bands, vest stripes, sign faces) pass a reflectivity that makes them
light up in headlights at night.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from roadvision.data.synth import _raster as R
from roadvision.data.synth._street import Camera, Colour, Env
from roadvision.data.synth.cities import City


@dataclass
class Item:
    z: float
    x: float
    draw: Callable  # draw(img, glow, px, py, s) with base point (px, py) and s px per metre
    kind: str
    equipment: bool = False


def poly(img, pts, colour):
    pts = np.asarray(pts, np.float64)
    R.draw_polygon(img, pts, colour, antialias=True)


def rect(img, x0, y0, x1, y1, colour):
    poly(img, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)


class Painter:
    """Draws sprites at a distance with the environment's light and haze applied."""

    def __init__(self, img, glow, env: Env, rng):
        self.img, self.glow, self.env, self.rng = img, glow, env, rng

    def c(self, colour, item: Item, refl: float = 0.0) -> Colour:
        return self.env.shade(colour, item.z, item.x, refl)

    def lamp(self, x, y, radius, colour, item: Item, strength=1.0):
        """A self-luminous light: drawn into the glow layer (bloom is added at the end)."""
        t = np.exp(-item.z / self.env.visibility) * 0.7 + 0.3
        c = tuple(float(v) * strength * t for v in colour)
        cv2.circle(self.glow, (int(x), int(y)), max(1, int(radius)), c, -1, cv2.LINE_AA)


def cone(p: Painter, it: Item, x, y, s, city: City):
    h, bw, tw = 0.72 * s, 0.36 * s, 0.07 * s
    rect(p.img, x - 0.24 * s, y - 0.05 * s, x + 0.24 * s, y, p.c((25, 25, 25), it))
    poly(p.img, [(x - bw / 2, y - 0.04 * s), (x + bw / 2, y - 0.04 * s), (x + tw / 2, y - h),
                  (x - tw / 2, y - h)], p.c(city.cone, it, 0.3))
    for lo, hi in ((0.32, 0.44), (0.55, 0.62)):
        wl = bw / 2 - (bw - tw) / 2 * lo
        wh = bw / 2 - (bw - tw) / 2 * hi
        poly(p.img, [(x - wl, y - lo * h), (x + wl, y - lo * h), (x + wh, y - hi * h),
                      (x - wh, y - hi * h)], p.c((235, 235, 235), it, 1.0))


def drum(p: Painter, it: Item, x, y, s, city: City):
    w, h = 0.58 * s, 1.0 * s
    rect(p.img, x - w / 2, y - h, x + w / 2, y, p.c(city.cone, it, 0.3))
    for k in range(4):
        lo = 0.2 + k * 0.2
        if k % 2 == 0:
            rect(p.img, x - w / 2, y - (lo + 0.1) * h, x + w / 2, y - lo * h,
                  p.c((240, 240, 240), it, 1.0))
    rect(p.img, x - w / 2 - 0.05 * s, y - 0.08 * s, x + w / 2 + 0.05 * s, y, p.c((30, 30, 30), it))


def _stripes(p: Painter, it: Item, x0, y0, x1, y1, c1, c2, period_px, refl=0.8):
    """A diagonally striped board (barriers, chevrons), clipped to the image."""
    H, W = p.img.shape[:2]
    ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    ix1, iy1 = min(int(np.ceil(x1)), W), min(int(np.ceil(y1)), H)
    if ix1 <= ix0 or iy1 <= iy0:
        return
    yy, xx = np.mgrid[iy0:iy1, ix0:ix1]
    on = (np.mod(xx + yy, max(period_px, 2.0)) < max(period_px, 2.0) / 2)[..., None]
    a, b = np.float32(p.c(c1, it, refl)), np.float32(p.c(c2, it, refl))
    p.img[iy0:iy1, ix0:ix1] = np.where(on, a, b)


_BARRIER_COLOURS = {"orange_white": ((255, 110, 20), (240, 240, 240)),
                    "red_white": ((210, 30, 30), (240, 240, 240)),
                    "yellow_black": ((240, 200, 20), (25, 25, 25)),
                    "concrete": ((170, 168, 160), (150, 148, 140))}


def barrier(p: Painter, it: Item, x, y, s, city: City, width_m: float):
    w = width_m * s
    c1, c2 = _BARRIER_COLOURS[city.barrier]
    if city.barrier == "concrete" or p.rng.random() < 0.2:  # jersey barrier with a stripe band
        poly(p.img, [(x - w / 2, y), (x + w / 2, y), (x + w / 2 - 0.1 * s, y - 0.8 * s),
                      (x - w / 2 + 0.1 * s, y - 0.8 * s)], p.c((175, 172, 165), it))
        _stripes(p, it, x - w / 2 + 0.1 * s, y - 0.7 * s, x + w / 2 - 0.1 * s, y - 0.55 * s,
                 c1, c2, 0.4 * s)
        return
    for lx in (x - w / 2 + 0.1 * s, x + w / 2 - 0.1 * s):
        rect(p.img, lx - 0.04 * s, y - 1.0 * s, lx + 0.04 * s, y, p.c((90, 90, 90), it))
        rect(p.img, lx - 0.2 * s, y - 0.05 * s, lx + 0.2 * s, y, p.c((40, 40, 40), it))
    for top in (0.75, 0.4) if p.rng.random() < 0.6 else (0.75,):
        _stripes(p, it, x - w / 2, y - (top + 0.25) * s, x + w / 2, y - top * s, c1, c2,
                 0.5 * s)


def arrow_board(p: Painter, it: Item, x, y, s, city: City):
    w, h, lift = 2.4 * s, 1.2 * s, 1.1 * s
    rect(p.img, x - 0.05 * s, y - lift, x + 0.05 * s, y, p.c((60, 60, 60), it))
    rect(p.img, x - 1.1 * s, y - 0.5 * s, x + 1.1 * s, y - 0.2 * s, p.c((235, 130, 20), it))
    for wx in (x - 0.8 * s, x + 0.8 * s):
        cv2.circle(p.img, (int(wx), int(y - 0.2 * s)), max(1, int(0.25 * s)),
                   p.c((20, 20, 20), it), -1, cv2.LINE_AA)
    top = y - lift - h
    rect(p.img, x - w / 2, top, x + w / 2, y - lift, p.c((20, 20, 22), it))
    direction = 1 if p.rng.random() < 0.5 else -1
    amber = (255, 170, 40)
    # Arrow of lamps: a shaft and a head; bright regardless of daylight.
    n = 7
    for k in range(n):
        lx = x + direction * (-0.9 + 1.6 * k / (n - 1)) * s
        p.lamp(lx, top + h / 2, 0.07 * s, amber, it, 1.6)
        poly(p.img, [(lx - 0.05 * s, top + h / 2 - 0.05 * s), (lx + 0.05 * s,
                       top + h / 2 - 0.05 * s), (lx + 0.05 * s, top + h / 2 + 0.05 * s),
                      (lx - 0.05 * s, top + h / 2 + 0.05 * s)], (255, 190, 80))
    tip = x + direction * 0.9 * s
    for k in (1, 2):
        for sign in (-1, 1):
            lx = tip - direction * 0.18 * k * s
            ly = top + h / 2 + sign * 0.16 * k * s
            p.lamp(lx, ly, 0.07 * s, amber, it, 1.6)


def _glyph_worker(p: Painter, cx, cy, size, colour):
    """A pictogram of a digging worker (a few strokes) inside a sign of ``size`` px."""
    t = max(1, int(round(size * 0.07)))
    head = (int(cx - 0.1 * size), int(cy - 0.22 * size))
    cv2.circle(p.img, head, max(1, int(0.07 * size)), colour, -1, cv2.LINE_AA)
    pts = [((cx - 0.12 * size, cy - 0.12 * size), (cx - 0.02 * size, cy + 0.1 * size)),
           ((cx - 0.02 * size, cy + 0.1 * size), (cx - 0.15 * size, cy + 0.3 * size)),
           ((cx - 0.02 * size, cy + 0.1 * size), (cx + 0.1 * size, cy + 0.3 * size)),
           ((cx - 0.1 * size, cy - 0.05 * size), (cx + 0.15 * size, cy + 0.05 * size)),
           ((cx + 0.15 * size, cy - 0.1 * size), (cx + 0.2 * size, cy + 0.3 * size))]
    for a, b in pts:
        cv2.line(p.img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, t, cv2.LINE_AA)


def sign_shape(p: Painter, it: Item, x, y, s, shape: str, fill, border, glyph, lift=1.3,
                size_m=0.9, refl=0.9):
    size = size_m * s
    cy = y - lift * s - size / 2
    rect(p.img, x - 0.03 * s, cy, x + 0.03 * s, y, p.c((110, 110, 110), it))
    if shape == "diamond":
        outer = [(x, cy - size / 2), (x + size / 2, cy), (x, cy + size / 2), (x - size / 2, cy)]
        inner = [(x, cy - size * 0.42), (x + size * 0.42, cy), (x, cy + size * 0.42),
                 (x - size * 0.42, cy)]
    elif shape == "triangle":
        outer = [(x, cy - size / 2), (x + size / 2, cy + size * 0.4), (x - size / 2,
                 cy + size * 0.4)]
        inner = [(x, cy - size * 0.3), (x + size * 0.33, cy + size * 0.3),
                 (x - size * 0.33, cy + size * 0.3)]
    elif shape == "circle":
        cv2.circle(p.img, (int(x), int(cy)), max(1, int(size / 2)), p.c(border, it, refl), -1,
                   cv2.LINE_AA)
        cv2.circle(p.img, (int(x), int(cy)), max(1, int(size * 0.38)), p.c(fill, it, refl), -1,
                   cv2.LINE_AA)
        outer = inner = None
    elif shape == "octagon":
        a = np.linspace(0, 2 * np.pi, 9)[:-1] + np.pi / 8
        outer = np.stack([x + size / 2 * np.cos(a), cy + size / 2 * np.sin(a)], 1)
        inner = np.stack([x + size * 0.44 * np.cos(a), cy + size * 0.44 * np.sin(a)], 1)
    else:  # rectangle
        outer = [(x - size / 2, cy - size * 0.4), (x + size / 2, cy - size * 0.4),
                 (x + size / 2, cy + size * 0.4), (x - size / 2, cy + size * 0.4)]
        inner = [(x - size * 0.45, cy - size * 0.35), (x + size * 0.45, cy - size * 0.35),
                 (x + size * 0.45, cy + size * 0.35), (x - size * 0.45, cy + size * 0.35)]
    if outer is not None:
        poly(p.img, outer, p.c(border, it, refl))
        poly(p.img, inner, p.c(fill, it, refl))
    if glyph == "worker" and size > 6:
        _glyph_worker(p, x, cy, size * 0.8, p.c((20, 20, 20), it))
    elif glyph == "text" and size > 6:
        t = max(1, int(size * 0.08))
        for k in (-1, 1):
            yy = int(cy + k * size * 0.12)
            cv2.line(p.img, (int(x - size * 0.25), yy), (int(x + size * 0.25), yy),
                     p.c((20, 20, 20), it), t, cv2.LINE_AA)
    elif glyph == "curve" and size > 6:
        t = max(1, int(size * 0.08))
        pts = R.bezier((x - 0.1 * size, cy + 0.25 * size), (x + 0.25 * size, cy),
                       (x - 0.05 * size, cy - 0.25 * size), 12)
        cv2.polylines(p.img, [pts.astype(np.int32)], False, p.c((20, 20, 20), it), t,
                      cv2.LINE_AA)


def work_sign(p: Painter, it: Item, x, y, s, city: City):
    if city.sign == "orange_diamond":
        sign_shape(p, it, x, y, s, "diamond", (255, 130, 20), (20, 20, 20), "worker")
    elif city.sign == "red_triangle":
        sign_shape(p, it, x, y, s, "triangle", (245, 245, 240), (210, 30, 30), "worker")
    else:
        sign_shape(p, it, x, y, s, "rectangle", (245, 205, 30), (20, 20, 20), "worker")


def person(p: Painter, it: Item, x, y, s, torso, legs=(40, 45, 60), vest=False, hat=None):
    """A standing person (1.75 m); workers wear a hi-vis vest with reflective bands."""
    skin = _SKINS[int(p.rng.integers(len(_SKINS)))]
    for dx in (-0.09, 0.09):
        rect(p.img, x + (dx - 0.07) * s, y - 0.85 * s, x + (dx + 0.07) * s, y, p.c(legs, it))
    rect(p.img, x - 0.22 * s, y - 1.45 * s, x + 0.22 * s, y - 0.82 * s,
          p.c(torso, it, 0.6 if vest else 0.0))
    for ax in (-0.27, 0.27):
        rect(p.img, x + (ax - 0.05) * s, y - 1.42 * s, x + (ax + 0.05) * s, y - 0.9 * s,
              p.c(torso, it, 0.6 if vest else 0.0))
    if vest:
        for band in (1.1, 1.25):
            rect(p.img, x - 0.22 * s, y - (band + 0.04) * s, x + 0.22 * s, y - band * s,
                  p.c((215, 215, 220), it, 1.0))
    cv2.circle(p.img, (int(x), int(y - 1.58 * s)), max(1, int(0.12 * s)), p.c(skin, it), -1,
               cv2.LINE_AA)
    if hat is not None:
        poly(p.img, [(x - 0.15 * s, y - 1.62 * s), (x + 0.15 * s, y - 1.62 * s),
                      (x + 0.1 * s, y - 1.74 * s), (x - 0.1 * s, y - 1.74 * s)], p.c(hat, it))


_SKINS = ((235, 200, 170), (200, 150, 110), (150, 100, 70), (100, 70, 50))
CAR_COLOURS = ((235, 235, 235), (25, 25, 28), (150, 152, 158), (95, 97, 102), (160, 30, 30),
                (30, 60, 140), (40, 70, 50), (200, 190, 160), (120, 80, 50))
ORANGES = ((255, 120, 20), (245, 140, 30), (230, 95, 25), (250, 170, 40))


def vehicle(p: Painter, it: Item, x, y, s, body, kind="car", beacon=False, facing=1):
    """A vehicle seen from behind (facing=1) or the front (facing=-1)."""
    w, h = {"car": (1.8, 1.45), "van": (2.0, 2.1), "truck": (2.5, 3.2), "bus": (2.55, 3.1)}[kind]
    w, h = w * s, h * s
    wheel = p.c((20, 20, 20), it)
    for wx in (x - w / 2 + 0.15 * s, x + w / 2 - 0.4 * s):
        rect(p.img, wx, y - 0.35 * s, wx + 0.25 * s, y, wheel)
    rect(p.img, x - w / 2, y - 0.3 * s - h * 0.55, x + w / 2, y - 0.25 * s, p.c(body, it, 0.1))
    if kind == "car":
        roof = y - 0.3 * s - h * 0.55
        poly(p.img, [(x - w * 0.42, roof), (x + w * 0.42, roof), (x + w * 0.33, y - h),
                      (x - w * 0.33, y - h)], p.c(body, it, 0.1))
        poly(p.img, [(x - w * 0.37, y - 0.32 * s - h * 0.55), (x + w * 0.37,
                       y - 0.32 * s - h * 0.55), (x + w * 0.3, y - h * 0.95),
                      (x - w * 0.3, y - h * 0.95)], p.c((40, 48, 58), it, 0.2))
    else:
        rect(p.img, x - w / 2, y - h, x + w / 2, y - 0.3 * s - h * 0.5, p.c(body, it, 0.1))
        if kind == "bus" or facing < 0:
            rect(p.img, x - w * 0.42, y - h * 0.92, x + w * 0.42, y - h * 0.65,
                  p.c((40, 48, 58), it, 0.2))
    light_y = y - 0.3 * s - h * 0.35
    if facing > 0:
        lc, strength = (255, 30, 20), 0.7 if p.env.daytime != "day" else 0.0
        tail = (200, 20, 20)
    else:
        lc, strength = (255, 250, 230), 2.0 if p.env.daytime != "day" else 0.0
        tail = (230, 230, 220)
    for lx in (x - w * 0.4, x + w * 0.4):
        rect(p.img, lx - 0.1 * s, light_y - 0.06 * s, lx + 0.1 * s, light_y + 0.06 * s,
              p.c(tail, it))
        if strength:
            p.lamp(lx, light_y, 0.12 * s, lc, it, strength)
    if beacon:
        p.lamp(x, y - h - 0.08 * s, 0.12 * s, (255, 160, 20), it, 1.5)
        rect(p.img, x - 0.1 * s, y - h - 0.15 * s, x + 0.1 * s, y - h, (255, 170, 40))


def building(p: Painter, it: Item, cam: Camera, side: int, x_face: float, z0: float,
              z1: float, height: float, depth: float, colour, windows: bool):
    """A block along the road: its road-facing facade plus the front face (nearest end)."""
    xs = [x_face, x_face + side * depth]
    face = [cam.project(x_face, yy, zz) for yy, zz in ((0, z0), (height, z0), (height, z1),
                                                        (0, z1))]
    zm = (z0 + z1) / 2
    shade_side = p.env.shade(np.asarray(colour) * 0.82, zm, x_face)
    poly(p.img, face, shade_side)
    if windows:
        rows = max(1, int(height // 3.2))
        polys = []
        for r in range(rows):
            ylo, yhi = 1.0 + r * 3.2, 1.0 + r * 3.2 + 1.6
            if yhi > height - 0.3:
                break
            for zz in np.arange(z0 + 1.0, z1 - 1.0, 3.0):
                q = [cam.project(x_face, a, b) for a, b in ((ylo, zz), (yhi, zz), (yhi, zz + 1.4),
                                                           (ylo, zz + 1.4))]
                polys.append(np.round(np.asarray(q) * 8).astype(np.int32))
        if polys:
            lit = p.env.daytime != "day"
            wc = p.env.shade((60, 70, 85), zm, x_face)
            cv2.fillPoly(p.img, polys, wc, cv2.LINE_AA, 3)
            if lit:
                # Lit windows are drawn into the frame, not the glow layer: nearer sprites
                # must be able to hide them.
                chosen = [q for q in polys if p.rng.random() < 0.35]
                if chosen:
                    t = np.exp(-zm / p.env.visibility)
                    cv2.fillPoly(p.img, chosen, tuple(float(v) * t for v in (230, 190, 120)),
                                 cv2.LINE_AA, 3)
    front = [cam.project(xx, yy, z0) for xx, yy in ((xs[0], 0), (xs[0], height),
                                                    (xs[1], height), (xs[1], 0))]
    poly(p.img, front, p.env.shade(colour, z0, x_face))


def tree(p: Painter, it: Item, x, y, s):
    trunk_h = p.rng.uniform(1.5, 3.0) * s
    rect(p.img, x - 0.12 * s, y - trunk_h, x + 0.12 * s, y, p.c((80, 60, 45), it))
    r = p.rng.uniform(1.5, 3.0) * s
    green = np.asarray((55, 85, 45)) * p.rng.uniform(0.8, 1.2)
    if p.env.weather == "snowy":
        green = green * 0.5 + 110
    for _ in range(4):
        cx = x + p.rng.normal(0, 0.35) * r
        cy = y - trunk_h - r * 0.6 + p.rng.normal(0, 0.3) * r
        cv2.circle(p.img, (int(cx), int(cy)), max(1, int(r * p.rng.uniform(0.6, 0.9))),
                   p.c(green * p.rng.uniform(0.85, 1.1), it), -1, cv2.LINE_AA)


def lamp_post(p: Painter, it: Item, x, y, s, side: int):
    h = 7.0 * s
    rect(p.img, x - 0.07 * s, y - h, x + 0.07 * s, y, p.c((70, 72, 75), it))
    arm = x - side * 1.5 * s
    cv2.line(p.img, (int(x), int(y - h)), (int(arm), int(y - h)), p.c((70, 72, 75), it),
             max(1, int(0.1 * s)), cv2.LINE_AA)
    if p.env.daytime != "day":
        p.lamp(arm, y - h + 0.1 * s, 0.25 * s, (255, 210, 140), it, 1.4)
