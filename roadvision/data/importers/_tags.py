"""Scene tags as real data sets spell them -> the contract's metadata vocabularies.

The contract (``data.contract.VOCABULARIES``) keeps five weathers, three times of day and five
scene kinds. Real data sets say more: NATIX StreetVision and ROADWork tag ``weather`` as a list
(``"['Partly Cloudy']"``, ``"['Cloudy', 'Rainy']"``), ``daytime`` as ``"Light"``/``"Dark"`` and
``scene_environment`` as ``"Urban"``/``"Suburban"``/``"Highway"``; a folder's CSV may say
``"overcast"`` or ``"night time"``. :func:`map_tag` maps every such spelling onto the contract,
so that a known tag never becomes NULL, and returns the values it could not map, so that an
import report can list them with counts instead of dropping them silently.

Lists: several weather tags name one scene, so the most visibility-reducing one wins (fog over
snow over rain over cloud over clear: that is what a slice of the error analysis should be
about); for the other fields the first mappable tag wins.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from roadvision.data import contract

__all__ = ["TAG_SPELLINGS", "map_tag"]

#: Lower-case spelling (spaces, ``-`` and ``_`` folded to one space) -> contract value.
#: The contract's own values and aliases are accepted as well (``contract.normalize_tag``).
TAG_SPELLINGS: dict[str, dict[str, str]] = {
    "weather": {
        "sunny": "clear", "clear": "clear", "clear sky": "clear", "fair": "clear",
        "mostly sunny": "clear", "mainly clear": "clear", "mostly clear": "clear",
        "partly cloudy": "cloudy", "partly sunny": "cloudy", "mostly cloudy": "cloudy",
        "cloudy": "cloudy", "overcast": "cloudy", "clouds": "cloudy", "grey": "cloudy",
        "gray": "cloudy",
        "rain": "rainy", "rainy": "rainy", "raining": "rainy", "light rain": "rainy",
        "heavy rain": "rainy", "drizzle": "rainy", "showers": "rainy", "wet": "rainy",
        "storm": "rainy", "stormy": "rainy", "thunderstorm": "rainy", "thunderstorms": "rainy",
        "snow": "snowy", "snowy": "snowy", "snowing": "snowy", "light snow": "snowy",
        "heavy snow": "snowy", "sleet": "snowy", "hail": "snowy", "ice": "snowy", "icy": "snowy",
        "fog": "foggy", "foggy": "foggy", "mist": "foggy", "misty": "foggy", "haze": "foggy",
        "hazy": "foggy", "smoke": "foggy", "smoky": "foggy", "smog": "foggy",
    },
    "daytime": {
        "light": "day", "day": "day", "daytime": "day", "day time": "day", "daylight": "day",
        "morning": "day", "noon": "day", "midday": "day", "afternoon": "day",
        "dark": "night", "night": "night", "nighttime": "night", "night time": "night",
        "dusk": "dusk", "dawn": "dusk", "dawn/dusk": "dusk", "dusk/dawn": "dusk",
        "twilight": "dusk", "sunrise": "dusk", "sunset": "dusk", "evening": "dusk",
        "low light": "dusk",
    },
    "scene": {
        "urban": "urban", "city": "urban", "city street": "urban", "downtown": "urban",
        "commercial": "urban", "town": "urban",
        "highway": "highway", "freeway": "highway", "interstate": "highway",
        "expressway": "highway", "motorway": "highway", "urban highway": "highway",
        "suburban": "residential", "suburb": "residential", "residential": "residential",
        "neighborhood": "residential", "neighbourhood": "residential",
        "rural": "rural", "countryside": "rural", "country road": "rural",
        "industrial": "industrial", "work site": "industrial", "construction site": "industrial",
    },
}

#: Weather severity for lists: the later in this tuple, the more it decides the scene.
_WEATHER_ORDER = ("clear", "cloudy", "rainy", "snowy", "foggy")


def map_tag(field_name: str, value: Any) -> tuple[str | None, list[str]]:
    """``(contract value or None, raw values that have no mapping)`` for one tag cell.

    ``value`` may be NULL, a plain string, a list-string (``"['Cloudy']"``, ``"[]"``) or a
    list/tuple/array of strings.
    """
    mapped: list[str] = []
    unmapped: list[str] = []
    for raw in _values(value):
        hit = _lookup(field_name, raw)
        (mapped if hit else unmapped).append(hit or raw)
    if not mapped:
        return None, unmapped
    if field_name == "weather":
        return max(mapped, key=_WEATHER_ORDER.index), unmapped
    return mapped[0], unmapped


def _lookup(field_name: str, raw: str) -> str | None:
    key = re.sub(r"[\s_\-]+", " ", raw.strip().lower())
    if key in TAG_SPELLINGS[field_name]:
        return TAG_SPELLINGS[field_name][key]
    try:
        return contract.normalize_tag(field_name, key)
    except contract.ContractError:
        return None


def _values(value: Any) -> list[str]:
    """The non-empty strings in one cell (a list-string is parsed; NULL gives [])."""
    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy arrays from pandas/pyarrow
    if isinstance(value, list | tuple):
        return [text for item in value for text in _values(item)]
    if isinstance(value, float) and value != value:  # NaN
        return []
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [text]
        if isinstance(parsed, list | tuple):
            return _values(list(parsed))
    if text.lower() in ("", "none", "null", "nan", "n/a", "na"):
        return []
    return [text]
