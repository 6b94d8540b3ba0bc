"""Synthetic shifted traffic: roadwork scenes from the generator under fog and/or at night.

For the drift tests and benchmark. The generator draws weather from each city's mix and the
time of day from a fixed mix; a shifted sample is made by the generator's own renderer (its
fog haze, its night light and headlights, not a filter laid over the image): the city's weather
mix is set to fog, and night is kept by drawing scenes until one is rendered at night.
Labelled synthetic like every generator sample.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import numpy as np

from roadvision.errors import UserError

__all__ = ["SHIFTS", "shifted_roadwork"]

SHIFTS = ("none", "fog", "night", "fog_night")
_FOG = (0.0, 0.0, 0.0, 1.0, 0.0)  # over VOCABULARIES["weather"]: clear cloudy rainy foggy snowy


def shifted_roadwork(shift: str, n: int, seed: int, width: int = 96,
                     height: int = 64) -> Iterator[tuple[np.ndarray, dict]]:
    """``n`` (RGB image, metadata) pairs under ``shift`` (``none`` = the generator's own mix)."""
    from roadvision.data.synth import sample_rng
    from roadvision.data.synth.cities import draw_city, draw_gps
    from roadvision.data.synth.roadwork import render_roadwork

    if shift not in SHIFTS:
        raise UserError(f"unknown shift {shift!r}; one of {', '.join(SHIFTS)}")
    made, index = 0, 0
    while made < n:
        rng = sample_rng(seed, "roadwork", index)
        index += 1
        city = draw_city(rng)
        if shift in ("fog", "fog_night"):
            city = dataclasses.replace(city, weather_p=_FOG)
        if shift in ("night", "fog_night") and not _will_be_night(rng, city):
            continue  # skipped before rendering: most of the cost of a night sample
        sample = render_roadwork(rng, city, width, height, label=index % 2)
        if shift in ("night", "fog_night") and sample.meta["daytime"] != "night":
            continue  # the renderer decides; the peek above only saves time
        lat, lon = draw_gps(rng, city)
        yield sample.image, {"lat": lat, "lon": lon, "weather": sample.meta["weather"],
                             "daytime": sample.meta["daytime"], "scene": sample.meta["scene"]}
        made += 1


def _will_be_night(rng: np.random.Generator, city) -> bool:
    """Whether ``render_roadwork`` will draw night from ``rng``: it draws the weather, then the
    time of day, first; peeked on a copy, so ``rng`` itself is untouched."""
    from roadvision.data.contract import VOCABULARIES
    from roadvision.data.synth.roadwork import DAYTIME_P

    peek = copy.deepcopy(rng)
    weather_p = np.asarray(city.weather_p, np.float64)
    peek.choice(len(weather_p), p=weather_p / weather_p.sum())
    return VOCABULARIES["daytime"][int(peek.choice(len(DAYTIME_P), p=DAYTIME_P))] == "night"
