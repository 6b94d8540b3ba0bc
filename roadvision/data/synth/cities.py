"""Synthetic "cities": parameter clusters that make a held-out city a real generalisation test.

Every sample draws one city. A city fixes what a model could otherwise memorise: the GPS centre,
the colour palette (asphalt, verge, sky, buildings), the marking convention (which lines are
yellow, the dash pattern, the paint width and wear), the weather mix and the roadwork equipment
style (US orange cones and diamond signs versus European red-white barriers and triangles).
The cities differ on purpose, so a split that holds out a city measures transfer to an unseen
style rather than interpolation inside a known one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["City", "CITIES", "CITY_NAMES", "draw_city"]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class City:
    name: str
    lat: float  # GPS centre
    lon: float
    gps_spread_km: float = 6.0  # std-dev of sample positions around the centre
    # --- aerial (lanes) style ---
    asphalt: RGB = (70, 70, 72)  # mean road colour
    verge_texture: str = "grass"  # skimage texture name for off-road ground
    verge: RGB = (92, 110, 70)  # verge tint
    roof: RGB = (150, 90, 80)  # typical roof colour
    white: RGB = (235, 235, 230)  # paint colours
    yellow: RGB = (225, 185, 40)
    centre_line: str = "double_yellow"  # double_yellow|yellow|yellow_dashed|white_dashed|white
    edge_line_p: float = 0.6  # probability that a road has painted edge lines
    dash_m: tuple[float, float] = (3.0, 9.0)  # dash length, gap length in metres
    paint_width_m: float = 0.12  # physical line width (1-3 px at 5-15 cm/px)
    wear: float = 0.25  # 0 = fresh paint, 1 = mostly gone
    lane_width_m: float = 3.6
    tree_density: float = 0.4  # relative amount of tree canopy
    building_density: float = 0.4
    # --- street (roadwork) style ---
    sky: RGB = (130, 170, 220)
    building: RGB = (150, 140, 130)
    cone: RGB = (255, 110, 20)  # cones/drums/barrier base colour
    barrier: str = "orange_white"  # orange_white|red_white|yellow_black|concrete
    sign: str = "orange_diamond"  # orange_diamond|red_triangle|yellow_rect
    vest: RGB = (235, 240, 60)  # hi-vis colour
    # weather mix over VOCABULARIES["weather"] = clear, cloudy, rainy, foggy, snowy
    weather_p: tuple[float, ...] = (0.4, 0.3, 0.15, 0.1, 0.05)
    # scene mix over VOCABULARIES["scene"] = urban, highway, residential, rural, industrial
    scene_p: tuple[float, ...] = (0.35, 0.2, 0.25, 0.1, 0.1)
    tags: dict[str, str] = field(default_factory=dict)


CITIES: tuple[City, ...] = (
    City("pittsburgh", 40.44, -79.99, asphalt=(66, 66, 70), verge=(84, 108, 62),
         centre_line="double_yellow", edge_line_p=0.7, dash_m=(3.0, 9.0), wear=0.35,
         sky=(120, 150, 200), building=(140, 110, 95), cone=(255, 105, 15),
         weather_p=(0.3, 0.35, 0.2, 0.08, 0.07), scene_p=(0.45, 0.15, 0.25, 0.05, 0.1)),
    City("phoenix", 33.45, -112.07, asphalt=(105, 100, 96), verge_texture="gravel",
         verge=(176, 150, 112), roof=(190, 170, 150), centre_line="yellow", edge_line_p=0.8,
         dash_m=(3.0, 9.0), wear=0.15, lane_width_m=3.7, tree_density=0.1, sky=(120, 175, 235),
         building=(200, 175, 140), cone=(255, 120, 30), weather_p=(0.8, 0.12, 0.04, 0.04, 0.0),
         scene_p=(0.25, 0.35, 0.3, 0.05, 0.05)),
    City("berlin", 52.52, 13.40, asphalt=(80, 82, 86), verge=(80, 104, 66), roof=(165, 80, 60),
         centre_line="white_dashed", edge_line_p=0.5, dash_m=(6.0, 12.0), paint_width_m=0.12,
         wear=0.2, lane_width_m=3.25, building_density=0.6, sky=(150, 165, 185),
         building=(190, 185, 175), cone=(240, 60, 30), barrier="red_white", sign="red_triangle",
         vest=(255, 130, 20), weather_p=(0.25, 0.4, 0.2, 0.1, 0.05),
         scene_p=(0.5, 0.15, 0.2, 0.05, 0.1)),
    City("london", 51.51, -0.13, asphalt=(58, 58, 60), verge=(70, 100, 60), roof=(120, 90, 85),
         white=(225, 225, 215), yellow=(215, 170, 30), centre_line="white_dashed",
         edge_line_p=0.55, dash_m=(4.0, 5.0), paint_width_m=0.10, wear=0.3, lane_width_m=3.2,
         building_density=0.7, sky=(160, 168, 178), building=(150, 120, 100), cone=(255, 90, 25),
         barrier="red_white", sign="red_triangle", vest=(240, 245, 70),
         weather_p=(0.15, 0.4, 0.3, 0.13, 0.02), scene_p=(0.55, 0.1, 0.25, 0.05, 0.05)),
    City("tokyo", 35.68, 139.69, asphalt=(92, 92, 98), verge_texture="brick",
         verge=(150, 140, 130), roof=(110, 115, 125), white=(240, 240, 240), yellow=(235, 160, 30),
         centre_line="yellow", edge_line_p=0.8, dash_m=(5.0, 5.0), paint_width_m=0.15, wear=0.1,
         lane_width_m=3.0, tree_density=0.2, building_density=0.8, sky=(140, 170, 210),
         building=(170, 170, 175), cone=(255, 80, 40), barrier="yellow_black",
         sign="yellow_rect", vest=(200, 255, 60), weather_p=(0.45, 0.3, 0.2, 0.03, 0.02),
         scene_p=(0.6, 0.15, 0.15, 0.0, 0.1)),
    City("sao_paulo", -23.55, -46.63, asphalt=(60, 58, 56), verge_texture="gravel",
         verge=(130, 95, 70), roof=(170, 90, 60), yellow=(230, 190, 50),
         centre_line="yellow_dashed", edge_line_p=0.45, dash_m=(4.0, 8.0), wear=0.55,
         lane_width_m=3.5, tree_density=0.5, building_density=0.6, sky=(150, 180, 210),
         building=(200, 180, 150), cone=(255, 100, 10), barrier="orange_white",
         vest=(255, 140, 0), weather_p=(0.5, 0.25, 0.2, 0.05, 0.0),
         scene_p=(0.5, 0.15, 0.2, 0.05, 0.1)),
    City("oslo", 59.91, 10.75, asphalt=(74, 76, 80), verge=(96, 112, 84), roof=(90, 70, 60),
         yellow=(240, 200, 60), centre_line="yellow_dashed", edge_line_p=0.75,
         dash_m=(3.0, 9.0), wear=0.4, lane_width_m=3.25, tree_density=0.6, sky=(170, 185, 205),
         building=(200, 190, 160), cone=(255, 70, 40), barrier="red_white", sign="red_triangle",
         vest=(255, 120, 30), weather_p=(0.2, 0.3, 0.15, 0.1, 0.25),
         scene_p=(0.35, 0.15, 0.3, 0.15, 0.05)),
    City("mumbai", 19.08, 72.88, asphalt=(85, 80, 74), verge_texture="gravel",
         verge=(140, 120, 90), roof=(160, 140, 120), white=(220, 220, 205),
         centre_line="white", edge_line_p=0.3, dash_m=(3.0, 6.0), paint_width_m=0.10, wear=0.6,
         lane_width_m=3.3, tree_density=0.4, building_density=0.7, sky=(175, 180, 170),
         building=(180, 160, 130), cone=(250, 120, 40), barrier="yellow_black",
         sign="yellow_rect", vest=(255, 150, 20), weather_p=(0.35, 0.2, 0.25, 0.2, 0.0),
         scene_p=(0.55, 0.15, 0.15, 0.05, 0.1)),
)

CITY_NAMES: tuple[str, ...] = tuple(city.name for city in CITIES)


def draw_city(rng: np.random.Generator) -> City:
    """One city, uniformly: held-out cities then hold about 1/len(CITIES) of the rows each."""
    return CITIES[int(rng.integers(len(CITIES)))]


def draw_gps(rng: np.random.Generator, city: City) -> tuple[float, float]:
    """A position around the city centre (Gaussian, ``gps_spread_km`` std-dev)."""
    dlat = rng.normal(0.0, city.gps_spread_km) / 111.0
    dlon = rng.normal(0.0, city.gps_spread_km) / (111.0 * max(np.cos(np.radians(city.lat)), 0.2))
    return round(city.lat + dlat, 6), round(city.lon + dlon, 6)
