"""Scene families: the generator's scenes made in different ways, to measure domain shift.

A model trained on one renderer learns that renderer's look (issue 13: about half the skill is
lost on independently made data). A family replaces one stage of how a scene is made, not only
its parameters, so that holding a family out of training is a real test of transfer:

- ``classic``: today's renderer, unchanged.
- ``geometry``: lanes from a clothoid road builder seen obliquely; street frames from a
  rolled, tilted camera.
- ``procedural``: noise-synthesised textures instead of stock photos, palettes drawn afresh.
- ``camera``: a consumer-camera model (white balance, exposure, vignette, chromatic
  aberration, tone curve, shot noise, lens distortion).
- ``degraded``: a resample, blur, signal-dependent noise and low-quality JPEG chain.

Every family serves both tasks. ``generate(family=...)`` takes one name, a comma list or
``all``; each row's family is drawn from that list (stratified per block, independent of the
label plan) and recorded in the manifest's ``family`` column, so a benchmark can hold one out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roadvision.data.synth.cities import City
from roadvision.errors import UserError

__all__ = ["Family", "FAMILIES", "FAMILY_NAMES", "DEFAULT_FAMILY", "parse_families",
           "family_for", "render_lanes_in", "render_roadwork_in"]

Post = Callable[[np.random.Generator, np.ndarray, list[np.ndarray]],
                tuple[np.ndarray, list[np.ndarray]]]


@dataclass(frozen=True)
class Family:
    """Which stages a family replaces (None = the classic stage)."""

    name: str
    description: str
    palette: Callable[[np.random.Generator, City], City] | None = None
    lanes_texture: Callable | None = None  # textures.texture_at_gsd's signature
    lanes_roads: Callable | None = None  # lanes._road_graph's signature
    lanes_camera: Callable | None = None  # lanes._camera's signature
    street_detail: Callable[[np.random.Generator], Callable] | None = None  # -> _detail-like
    street_camera: Callable | None = None  # _street.apply_camera's signature
    lanes_post: Post | None = None  # on the finished uint8 tile and its masks
    street_post: Post | None = None


def _families() -> dict[str, Family]:
    from roadvision.data.synth.families import camera, degrade, geometry, materials

    return {f.name: f for f in (
        Family("classic", "today's renderer"),
        Family("geometry", "clothoid roads and an oblique view (lanes); a rolled, tilted "
               "camera (roadwork)", lanes_roads=geometry.clothoid_roads,
               lanes_post=geometry.oblique_lanes, street_post=geometry.tilted_street),
        Family("procedural", "noise-synthesised textures, palettes drawn per sample",
               palette=materials.repaint_city, lanes_texture=materials.procedural_texture,
               street_detail=materials.procedural_detail),
        Family("camera", "consumer-camera model with lens distortion",
               lanes_camera=camera.lanes_camera, street_camera=camera.street_camera,
               lanes_post=camera.lens_distortion, street_post=camera.lens_distortion),
        Family("degraded", "resample, blur, sensor noise and low-quality JPEG",
               lanes_post=degrade.degrade_lanes, street_post=degrade.degrade_street),
    )}


FAMILIES: dict[str, Family] = _families()
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
DEFAULT_FAMILY = "classic"


def parse_families(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"classic"``, ``"camera,degraded"``, ``"all"`` or a list -> family names (ordered,
    unique); unknown names are a UserError that lists the valid ones."""
    if spec is None:
        return (DEFAULT_FAMILY,)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if names == ["all"]:
        return FAMILY_NAMES
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise UserError(f"unknown scene family {unknown or spec!r}; valid: "
                        f"{', '.join(FAMILY_NAMES)} or all (comma-separate several)")
    return tuple(dict.fromkeys(names))


def family_for(seed: int, task_code: int, index: int, names: tuple[str, ...]) -> str:
    """Row ``index``'s family: every block of len(names) rows holds each family once, in an
    order drawn from (seed, task, block), so families are balanced and independent of n."""
    k = len(names)
    if k == 1:
        return names[0]
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, task_code, 2, index // k])
    return names[int(rng.permutation(k)[index % k])]


def family_rng(seed: int, task_code: int, index: int) -> np.random.Generator:
    """The family stages' own generator, so that the classic draws of a row never move."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, task_code, 3, int(index)])


def render_lanes_in(family: Family, rng: np.random.Generator, frng: np.random.Generator,
                    city: City, width: int, height: int):
    """``lanes.render_lanes`` with the family's stages; masks warp with the pixels."""
    from roadvision.data.synth.lanes import render_lanes
    from roadvision.data.synth.textures import texture_at_gsd

    if family.palette is not None:
        city = family.palette(frng, city)
    sample = render_lanes(rng, city, width, height,
                          texture=family.lanes_texture or texture_at_gsd,
                          road_graph=family.lanes_roads, camera=family.lanes_camera)
    if family.lanes_post is not None:
        image, (mask12, mask4) = family.lanes_post(frng, sample.image,
                                                   [sample.mask, sample.meta["mask4"]])
        sample.image, sample.mask, sample.meta["mask4"] = image, mask12, mask4
    return sample


def render_roadwork_in(family: Family, rng: np.random.Generator, frng: np.random.Generator,
                       city: City, width: int, height: int, label: int):
    """``roadwork.render_roadwork`` with the family's stages."""
    from roadvision.data.synth.roadwork import render_roadwork
    from roadvision.data.synth.textures import _detail

    if family.palette is not None:
        city = family.palette(frng, city)
    detail = family.street_detail(frng) if family.street_detail is not None else _detail
    sample = render_roadwork(rng, city, width, height, label=label, detail=detail,
                             camera=family.street_camera)
    if family.street_post is not None:
        sample.image, _ = family.street_post(frng, sample.image, [])
    return sample
