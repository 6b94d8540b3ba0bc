"""Light, weather and camera for the street renderer (``roadwork.py``).

``Env.shade`` is the one place where daylight, tint, headlights and haze act on a colour, so the
ground, every sprite and the fog agree. ``Camera`` is the pinhole model (metres -> pixels).
Overlays that act on the finished frame (bloom around lights, rain streaks, snow flakes, the
camera's exposure, vignetting, blur and noise) follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from roadvision.data.synth.cities import City

__all__ = ["Env", "Camera", "Colour", "make_env", "weather_overlay", "apply_camera", "blur"]

Colour = tuple[float, float, float]


@dataclass
class Env:
    weather: str
    daytime: str
    ambient: float
    tint: np.ndarray  # RGB multiplier of daylight
    headlight: float  # strength of the ego car's low beams
    fog: np.ndarray  # RGB fog/haze colour
    visibility: float  # metres (extinction distance)

    def light(self, z, x, refl):
        """Illumination factor(s) at distance z / lateral x; ``refl`` = retroreflectivity."""
        beam = np.exp(-((np.asarray(x) / (2.0 + 0.3 * np.asarray(z))) ** 2))
        head = self.headlight * 1.3 / (1.0 + (np.asarray(z) / 14.0) ** 2) * beam
        return self.ambient + head * (1.0 + 5.0 * refl)

    def shade(self, colour, z: float, x: float = 0.0, refl: float = 0.0) -> Colour:
        """Final RGB of a surface colour seen at (x, z): lit, tinted, then hazed."""
        c = np.asarray(colour, np.float32) * self.tint * self.light(z, x, refl)
        t = np.exp(-z / self.visibility)
        return tuple(float(v) for v in c * t + self.fog * (1 - t))


def make_env(rng, city: City, weather: str, daytime: str) -> Env:
    ambient = {"day": rng.uniform(0.85, 1.1), "dusk": rng.uniform(0.4, 0.6),
               "night": rng.uniform(0.07, 0.16)}[daytime]
    tint = {"day": (1.0, 1.0, 1.0), "dusk": (1.12, 0.86, 0.7), "night": (0.75, 0.85, 1.15)}[daytime]
    headlight = {"day": 0.0, "dusk": 0.12, "night": 0.45}[daytime]
    fog, vis = {
        "clear": ((200, 210, 225), rng.uniform(900, 2500)),
        "cloudy": ((185, 188, 195), rng.uniform(400, 900)),
        "rainy": ((150, 155, 162), rng.uniform(120, 260)),
        "foggy": ((205, 207, 210), rng.uniform(18, 70)),
        "snowy": ((215, 220, 228), rng.uniform(70, 180)),
    }[weather]
    if weather in ("cloudy", "rainy", "snowy"):
        ambient *= {"cloudy": 0.85, "rainy": 0.7, "snowy": 0.9}[weather]
    fog = np.asarray(fog, np.float32) * ambient * np.asarray(tint, np.float32)
    if daytime == "night":
        fog = fog * 0.6 + 4.0
    return Env(weather, daytime, float(ambient), np.asarray(tint, np.float32), headlight,
                fog.astype(np.float32), float(vis))


@dataclass
class Camera:
    width: int
    height: int
    f: float  # focal length, px
    cx: float
    horizon: float  # y of the horizon, px
    h: float  # camera height, m
    curve: float  # road centre offset = curve * z^2 (m)

    def project(self, x, y, z):
        """Ground-relative metres -> pixels (x is relative to the road centre line)."""
        z = np.maximum(np.asarray(z, np.float64), 0.5)
        X = np.asarray(x) + self.curve * z * z
        return self.cx + self.f * X / z, self.horizon + self.f * (self.h - np.asarray(y)) / z

    @property
    def z_near(self) -> float:
        return self.f * self.h / (self.height - self.horizon)




def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a downscaled copy (bloom is smooth, 10x faster)."""
    factor = int(sigma // 3)
    if factor < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def weather_overlay(rng, img, glow, env: Env, width, height) -> np.ndarray:
    if glow.any():  # lights: core + bloom (wider in fog and rain)
        sigma = max(1.0, 0.006 * width) * (3.0 if env.weather in ("foggy", "rainy") else 1.5)
        img = img + glow + 1.5 * blur(glow, sigma)
    if env.weather == "rainy":
        streaks = np.zeros((height, width), np.float32)
        n = int(rng.uniform(0.6, 1.5) * width * height / 600)
        x0 = rng.uniform(0, width, n)
        y0 = rng.uniform(0, height, n)
        length = rng.uniform(0.015, 0.05) * height
        slant = rng.uniform(-0.3, 0.3)
        pts = np.stack([np.stack([x0, y0], 1), np.stack([x0 + slant * length, y0 + length], 1)],
                       1)
        cv2.polylines(streaks, np.round(pts * 8).astype(np.int32), False, 1.0, 1, cv2.LINE_AA,
                      3)
        a = (streaks * rng.uniform(0.15, 0.3))[..., None]
        img = img * (1 - a) + (env.fog * 1.2 + 30) * a
    elif env.weather == "snowy":
        flakes = np.zeros((height, width), np.float32)
        n = int(rng.uniform(0.3, 1.0) * width * height / 500)
        xs, ys = rng.uniform(0, width, n), rng.uniform(0, height, n)
        radii = np.clip(rng.exponential(0.0025 * height, n), 0.5, 0.015 * height)
        for x, y, r in zip(xs.astype(int), ys.astype(int), radii, strict=True):
            cv2.circle(flakes, (int(x), int(y)), max(1, int(round(r))), 1.0, -1, cv2.LINE_AA)
        a = (flakes * rng.uniform(0.5, 0.9))[..., None]
        img = img * (1 - a) + np.float32([240, 242, 248]) * max(env.ambient, 0.35) * a
    return img


def apply_camera(rng, img, env: Env) -> np.ndarray:
    h, w = img.shape[:2]
    img = img * rng.lognormal(0.0, 0.1) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    yy, xx = np.ogrid[:h, :w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1.0 - rng.uniform(0.05, 0.25) * r2 / 2)[..., None].astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.35, 0.8))
    noise = {"day": 2.0, "dusk": 4.0, "night": 6.0}[env.daytime] * rng.uniform(0.6, 1.4)
    img = img + noise * rng.standard_normal(img.shape, dtype=np.float32)
    return img
