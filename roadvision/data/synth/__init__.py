"""Procedural data sets in the data contract: aerial lane tiles and street-level roadwork scenes.

No road data set can be downloaded on our machines, so tests, demos and benchmarks train on this
generator. It is deterministic per seed, and every sample draws from its own
``numpy.random.Generator`` seeded with ``(seed, task, index)``: sample ``i`` is the same whether
``n`` is 10 or 10,000, and the same seed gives a byte-identical data set (same ``dataset.json``
content hash: fixed JPEG settings, no timestamps).

"Cities" (``cities.py``) are parameter clusters; a held-out city is a real generalisation test.
Scores on these data are labelled synthetic (``DatasetInfo.synthetic``) and never compared with
published real-data numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from roadvision.data.contract import TASKS, DatasetInfo, classes_for, write_dataset
from roadvision.data.output import OutputFolder
from roadvision.data.synth import _raster as R
from roadvision.data.synth.cities import CITIES, CITY_NAMES, City, draw_city, draw_gps
from roadvision.data.synth.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    FAMILY_NAMES,
    family_for,
    family_rng,
    parse_families,
    render_lanes_in,
    render_roadwork_in,
)
from roadvision.data.synth.sizes import SIZES, NamedSize
from roadvision.data.synth.uri import parse_synth_uri
from roadvision.errors import UserError
from roadvision.progress import track

__all__ = ["generate", "render_sample", "sample_rng", "SIZES", "NamedSize", "GENERATOR_VERSION",
           "MAX_SIZE", "CITIES", "CITY_NAMES", "parse_synth_uri", "FAMILY_NAMES"]

#: Bumped whenever a change alters the pixels or metadata a seed produces.
GENERATOR_VERSION = "2"  # 2: scene families and the manifest's family column

#: Largest image the generator makes (a 12 MP phone photo).
MAX_SIZE = (4032, 3024)

#: Per-field share of NULL metadata (NATIX requests often carry none).
NULL_P = 0.6
#: Share of rows without GPS.
GPS_NULL_P = 0.1
#: Share of roadwork positives (label 1).
POSITIVE_P = 0.5
_TASK_CODE = {"lanes": 1, "roadwork": 2}


def _check_args(task: str, n: int, size, num_classes: int) -> tuple[int, int]:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if not isinstance(n, int | np.integer) or n < 1:
        raise UserError(f"n must be a positive integer, got {n!r}")
    if task == "lanes" and num_classes not in (4, 12):
        raise UserError(f"lanes supports num_classes 4 or 12, not {num_classes}")
    if isinstance(size, str):
        if size not in SIZES:
            raise UserError(f"unknown size {size!r}; named sizes: {', '.join(SIZES)} "
                            "(or a width and height)")
        return getattr(SIZES[size], task)
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UserError(f"size must be (width, height), got {size!r}") from None
    # Either orientation: a portrait phone photo is 3024x4032.
    if min(width, height) < 16 or max(width, height) > MAX_SIZE[0] or \
            min(width, height) > MAX_SIZE[1]:
        raise UserError(f"size {width}x{height} out of range: 16x16 .. "
                        f"{MAX_SIZE[0]}x{MAX_SIZE[1]} (or {MAX_SIZE[1]}x{MAX_SIZE[0]})")
    return width, height


def sample_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The generator of one sample: independent of n and of every other sample."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, _TASK_CODE[task], 0, int(index)])


#: Label and NULL assignment is stratified in blocks of BLOCK consecutive indices.
BLOCK = 10


def block_plan(seed: int, task: str, index: int) -> dict[str, bool]:
    """Which rows of ``index``'s block are positive / NULL per field (stratified draws).

    Every complete block of ``BLOCK`` rows holds exactly ``POSITIVE_P`` positives, ``NULL_P``
    NULLs per metadata field and ``GPS_NULL_P`` missing GPS, each in its own random order (one
    permutation per field, so NULLs of different fields are independent). Rates in any data set
    are then on target up to one block, whatever the seed, instead of swinging by +-7 points
    (binomial, n=200) as independent coin flips do. A row's plan depends only on (seed, task,
    index // BLOCK), so samples stay independent of ``n``.
    """
    brng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _TASK_CODE[task], 1, index // BLOCK])
    pos = index % BLOCK

    def chosen(share: float) -> bool:
        return bool(brng.permutation(BLOCK)[pos] < round(share * BLOCK))

    plan = {"positive": chosen(POSITIVE_P)}
    for name in ("weather", "daytime", "scene", "text"):
        plan[f"null_{name}"] = chosen(NULL_P)
    plan["null_gps"] = chosen(GPS_NULL_P)
    return plan


def render_sample(task: str, seed: int, index: int, width: int, height: int,
                  num_classes: int = 4, family: str = DEFAULT_FAMILY) -> dict:
    """One sample as arrays + metadata (no files): ``image``, ``mask`` (lanes), ``label``,
    ``city``, ``lat``, ``lon``, ``weather``, ``daytime``, ``scene``, ``text``, ``quality``,
    ``family`` (the scene family, ``roadvision.data.synth.families``, that made it)."""
    rng = sample_rng(seed, task, index)
    city = draw_city(rng)
    plan = block_plan(seed, task, index)
    # Metadata comes from its own child generator, so that renderer changes never move GPS.
    meta_rng = np.random.default_rng(rng.integers(1 << 63))
    nulls = {k: plan[f"null_{k}"] for k in ("weather", "daytime", "scene", "text")}
    gps = None if plan["null_gps"] else draw_gps(meta_rng, city)
    quality = int(meta_rng.integers(72, 96))
    fam, frng = FAMILIES[family], family_rng(seed, _TASK_CODE[task], index)
    if task == "lanes":
        sample = render_lanes_in(fam, rng, frng, city, width, height)
        return {**_lanes_sample(sample, city, num_classes, nulls, gps, quality), "family": family}
    sample = render_roadwork_in(fam, rng, frng, city, width, height, int(plan["positive"]))
    return {**_roadwork_sample(sample, city, nulls, gps, quality), "family": family}


def _lanes_sample(sample, city: City, num_classes, nulls, gps, quality) -> dict:
    mask = sample.mask if num_classes == 12 else sample.meta["mask4"]
    # Aerial survey flights fly by day; haze is the weather they record ("haze" is "foggy" in
    # the contract's vocabulary). Tiles carry no caption. NULL rates follow the roadwork rows.
    truth = {"weather": "foggy" if sample.meta["haze"] > 0.2 else "clear", "daytime": "day",
             "scene": sample.meta["scene"]}
    return {"image": sample.image, "mask": mask, "label": None, "city": city.name,
            "lat": gps[0] if gps else None, "lon": gps[1] if gps else None, "text": None,
            **{k: None if nulls[k] else v for k, v in truth.items()},
            "quality": max(quality, 85)}  # paint is 1-3 px: keep it readable after JPEG


def _roadwork_sample(sample, city: City, nulls, gps, quality) -> dict:
    meta = sample.meta
    return {"image": sample.image, "mask": None, "label": int(sample.label), "city": city.name,
            "lat": gps[0] if gps else None, "lon": gps[1] if gps else None,
            **{k: None if nulls[k] else meta[k] for k in ("weather", "daytime", "scene", "text")},
            "quality": quality}


def generate(task: str, n: int, seed: int, out: str | Path,
             size: str | tuple[int, int] = "default", num_classes: int = 4, *,
             overwrite: bool = False, family: str | list[str] = DEFAULT_FAMILY) -> DatasetInfo:
    """Generate ``n`` samples of ``task`` into ``out`` (data contract); returns the info.

    ``family`` is a scene family, a comma list or ``all`` (``synth.families``); rows are
    spread evenly over the listed families and each row's family is in the ``family`` column.

    ``size`` is a name in ``SIZES`` or ``(width, height)`` (16x16 up to 4032x3024). A non-empty
    ``out`` that is not this generator's output for the same arguments is refused unless
    ``overwrite``; the data set is written aside and swapped in whole (``data.output``).
    """
    width, height = _check_args(task, n, size, num_classes)
    families = parse_families(family)
    inputs = {"task": task, "n": int(n), "seed": int(seed), "size": [width, height],
              "num_classes": num_classes, "generator_version": GENERATOR_VERSION,
              "families": list(families)}
    size_name = size if isinstance(size, str) else f"{width}x{height}"
    with OutputFolder(out, command="data synth", inputs=inputs, overwrite=overwrite) as tmp:
        return _generate(task, n, seed, tmp, size_name, width, height, num_classes, families)


def _generate(task: str, n: int, seed: int, out: Path, size_name: str, width: int, height: int,
              num_classes: int, families: tuple[str, ...]) -> DatasetInfo:
    (out / "images").mkdir(parents=True, exist_ok=True)
    if task == "lanes":
        (out / "masks").mkdir(exist_ok=True)
    rows = []
    for index in track(range(n), f"synth {task}", total=n):
        s = render_sample(task, seed, index, width, height, num_classes,
                          family_for(seed, _TASK_CODE[task], index, families))
        sid = f"{task}-s{seed}-{index:06d}"
        image_bytes = R.encode_jpeg(s["image"], s["quality"])
        image_rel = f"images/{sid}.jpg"
        (out / image_rel).write_bytes(image_bytes)
        mask_rel = None
        if s["mask"] is not None:
            mask_rel = f"masks/{sid}.png"
            (out / mask_rel).write_bytes(R.encode_png(s["mask"]))
        rows.append({
            "id": sid, "image": image_rel, "mask": mask_rel, "label": s["label"],
            "lat": s["lat"], "lon": s["lon"], "city": s["city"], "weather": s["weather"],
            "daytime": s["daytime"], "scene": s["scene"], "text": s["text"],
            "width": int(s["image"].shape[1]), "height": int(s["image"].shape[0]),
            "sha256": hashlib.sha256(image_bytes).hexdigest(), "source": "synthetic",
            "family": s["family"],
        })
    df = pd.DataFrame(rows)
    info = DatasetInfo(task=task, classes=classes_for(task, num_classes if task == "lanes" else 4),
                       synthetic=True, source=f"synth:{size_name}",
                       extra={"seed": int(seed), "size_name": size_name,
                              "generator_version": GENERATOR_VERSION,
                              "size": [width, height], "cities": list(CITY_NAMES),
                              "families": list(families),
                              # lanes tiles draw their GSD uniformly from 0.05-0.15 m/px; a
                              # model trained on them is mapped at the middle of that range
                              **({"gsd_m": 0.10} if task == "lanes" else {})})
    return write_dataset(out, df, info)

