"""GPS sample weights that favour the *target deployment regions*, never the test set.

Weighting by closeness to the test set's coordinates leaks the test distribution into
training (DESIGN.md). Instead the user names where the model will be deployed (a pipeline
parameter): a few ``lat,lon`` points, or many points from real requests. Those points are
reduced to at most ``max_centres`` centres with k-means (on unit vectors, so it works across
the antimeridian), each training row gets the haversine distance to the nearest centre, and
a band table turns distance into weight (defaults: <50 km 5.0, 50-200 km 2.5, 200-500 km 1.0,
>500 km 0.3; NULL GPS ``null_weight``). Train weights are normalised to mean 1; val/test rows
get weight 1.0 and are never looked at.

The report (``dataset.json`` ``extra.weights``) includes the share of a simulated weighted
epoch (sampling train rows with replacement by weight) within 100 km of a centre, with a
warning and its reason when it is under 70%: then the data barely covers the target regions
and weighting cannot make up for it (WILDS: reweighting rarely beats plain training).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadvision.data import contract
from roadvision.data.contract import DatasetInfo
from roadvision.data.fileops import carry_files, check_out_dir
from roadvision.data.output import OutputFolder
from roadvision.data.quarantine import drop_unconfined
from roadvision.errors import UserError

__all__ = ["DEFAULT_BANDS", "gps_weights", "haversine_km", "parse_target_regions", "parse_targets",
           "target_centres"]

#: (upper distance bound in km, weight), checked in order.
DEFAULT_BANDS: tuple[tuple[float, float], ...] = (
    (50.0, 5.0), (200.0, 2.5), (500.0, 1.0), (math.inf, 0.3))
EARTH_RADIUS_KM = 6371.0088


def parse_targets(text: str) -> list[tuple[float, float]]:
    """Parse ``"lat,lon;lat,lon"`` or a file (one ``lat,lon`` per line, or a JSON list).

    JSON files may hold ``[[lat, lon], ...]`` or ``[{"lat": .., "lon": ..}, ...]``; text files
    may have blank lines and ``#`` comments. Any bad entry is a UserError that names it.
    """
    text = str(text).strip()
    if not text:
        raise UserError("--targets is empty: give 'lat,lon;lat,lon' or a file of points")
    path = Path(text)
    looks_like_file = path.suffix.lower() in (".txt", ".json", ".csv") or "/" in text
    if path.is_file():
        content = path.read_text().strip()
        if content.startswith("["):
            try:
                items = json.loads(content)
            except json.JSONDecodeError as exc:
                raise UserError(f"targets file {path}: invalid JSON ({exc.msg})") from exc
            if not isinstance(items, list):
                raise UserError(f"targets file {path}: expected a JSON list of points")
            entries = [(f"{path.name} item {i + 1}", item) for i, item in enumerate(items)]
        else:
            entries = [(f"{path.name} line {n + 1}", line.split("#")[0].strip())
                       for n, line in enumerate(content.splitlines())]
            entries = [(where, item) for where, item in entries if item]
        source = f"targets file {path}"
    elif looks_like_file:
        raise UserError(f"targets file {text} does not exist")
    else:
        entries = [(f"entry {i + 1}", item.strip()) for i, item in enumerate(text.split(";"))]
        source = "--targets"
    targets = [_parse_point(where, item, source) for where, item in entries]
    if not targets:
        raise UserError(f"{source}: no target points")
    return targets


def parse_target_regions(text: str) -> list[tuple[float, float]]:
    """The pipeline's ``target_regions`` (``"lat,lon;lat,lon"`` or a points file): the points,
    ``[]`` when empty (no targets = uniform weights); errors name ``target_regions``."""
    if not (text or "").strip():
        return []
    try:
        return parse_targets(text)
    except UserError as exc:
        raise UserError(f"target_regions: {exc}") from None


def _parse_point(where: str, item: Any, source: str) -> tuple[float, float]:
    try:
        if isinstance(item, dict):
            lat, lon = float(item["lat"]), float(item["lon"])
        elif isinstance(item, list | tuple):
            lat, lon = (float(v) for v in item)
        else:
            parts = [p for p in str(item).replace(",", " ").split() if p]
            lat, lon = (float(p) for p in parts)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{source} {where}: {item!r} is not 'lat,lon'") from exc
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise UserError(f"{source} {where}: {item!r}: latitude {lat} out of range -90..90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise UserError(f"{source} {where}: {item!r}: longitude {lon} out of range -180..180")
    return lat, lon


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
                 ) -> np.ndarray:
    """Great-circle distance in km (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def target_centres(targets: Sequence[tuple[float, float]], max_centres: int = 8,
                   seed: int = 0) -> np.ndarray:
    """(k, 2) lat/lon centres: the distinct targets, or k-means centres when there are many."""
    points = np.unique(np.asarray(targets, dtype=float).reshape(-1, 2), axis=0)
    if len(points) <= max_centres:
        return points
    from sklearn.cluster import KMeans

    lat, lon = np.radians(points[:, 0]), np.radians(points[:, 1])
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    km = KMeans(n_clusters=max_centres, n_init=10, random_state=seed).fit(xyz)
    c = km.cluster_centers_ / np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True)
    return np.column_stack([np.degrees(np.arcsin(np.clip(c[:, 2], -1, 1))),
                            np.degrees(np.arctan2(c[:, 1], c[:, 0]))])


def _band_weights(distance_km: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    weights = np.full(distance_km.shape, float(bands[-1][1]))
    for upper, weight in reversed(bands):
        weights[distance_km < upper] = weight
    return weights


def gps_weights(src: str | Path, out: str | Path, *, targets: Sequence[tuple[float, float]],
                bands: Sequence[tuple[float, float]] = DEFAULT_BANDS, null_weight: float = 1.0,
                max_centres: int = 8, near_km: float = 100.0, warn_below: float = 0.7,
                seed: int = 0, overwrite: bool = False) -> DatasetInfo:
    """Write ``out`` = ``src`` plus a ``weight`` column (see the module docstring).

    As in ``split``: rows whose file is a link or outside ``src`` are left out and listed in
    ``out/quarantine.json``; ``out`` is swapped in whole and never silently replaced.
    """
    if not targets:
        raise UserError("no target points: GPS weighting needs the deployment regions")
    for i, point in enumerate(targets):
        _parse_point(f"entry {i + 1}", list(point), "targets")
    if not bands or any(w < 0 or not math.isfinite(w) for _, w in bands):
        raise UserError(f"weight bands {bands}: weights must be finite and >= 0")
    if list(bands) != sorted(bands, key=lambda b: b[0]):
        raise UserError(f"weight bands {bands}: upper bounds must increase")
    if not (math.isfinite(null_weight) and null_weight >= 0):
        raise UserError(f"null_weight {null_weight}: must be finite and >= 0")
    src, out = Path(src), check_out_dir(out)
    info = contract.read_info(src)
    df = contract.read_manifest(src)
    if df.empty:
        raise UserError(f"{src}: the manifest has no rows")
    contract.check_gps(df, src / contract.MANIFEST)
    df, refused = drop_unconfined(src, df)
    folder = OutputFolder(out, command="data weights", overwrite=overwrite, inputs={
        "source": str(src.resolve()), "content_hash": info.content_hash,
        "targets": [list(map(float, t)) for t in targets], "bands": [list(b) for b in bands],
        "null_weight": null_weight, "max_centres": max_centres, "near_km": near_km,
        "warn_below": warn_below, "seed": seed})

    if "split" in df.columns and (df["split"] == "train").any():
        train = (df["split"] == "train").fillna(False).to_numpy(dtype=bool)
        scope = "train rows (val/test weight 1.0)"
    else:
        train = np.ones(len(df), dtype=bool)
        scope = "all rows (no split column yet: run `roadvision data split` first)"
    centres = target_centres(targets, max_centres, seed)
    has_gps = (df["lat"].notna() & df["lon"].notna()).to_numpy()
    lat = df["lat"].to_numpy(dtype=float, na_value=np.nan)
    lon = df["lon"].to_numpy(dtype=float, na_value=np.nan)
    distance = np.full(len(df), np.inf)
    if has_gps.any():
        d = haversine_km(lat[has_gps, None], lon[has_gps, None], centres[None, :, 0],
                         centres[None, :, 1])
        distance[has_gps] = d.min(axis=1)
    raw = np.where(has_gps, _band_weights(distance, bands), float(null_weight))
    weights = np.ones(len(df))
    mean = raw[train].mean()
    if mean <= 0:
        raise UserError("every training row got weight 0: check the bands and null_weight")
    weights[train] = raw[train] / mean

    near = train & (distance < near_km)
    share_expected = float(weights[near].sum() / weights[train].sum())
    rng = np.random.default_rng(seed)
    train_idx = np.flatnonzero(train)
    draw = rng.choice(train_idx, size=len(train_idx), p=weights[train] / weights[train].sum())
    share_simulated = float((distance[draw] < near_km).mean())
    warnings = []
    if share_simulated < warn_below:
        reason = ("no training row is" if not near.any()
                  else f"only {int(near.sum())} of {int(train.sum())} training rows are")
        warnings.append(f"only {share_simulated:.0%} of a simulated weighted epoch lies within "
                        f"{near_km:g} km of a target centre (below {warn_below:.0%}): {reason} "
                        f"within {near_km:g} km; weighting cannot make up for data the set "
                        "does not have, so collect data in the target regions")
    band_names = []
    lower = 0.0
    for upper, weight in bands:
        label = f"<{upper:g} km" if lower == 0 else (f">{lower:g} km" if math.isinf(upper)
                                                     else f"{lower:g}-{upper:g} km")
        in_band = train & has_gps & (distance >= lower) & (distance < upper)
        band_names.append({"band": label, "raw_weight": weight, "train_rows": int(in_band.sum())})
        lower = upper
    df = df.copy()
    df["weight"] = weights
    info.extra = {**info.extra, "weights": {
        "rule": "haversine distance to the nearest target centre -> band weight; "
                "train mean normalised to 1",
        "scope": scope,
        "targets": len(targets),
        "centres": [[round(float(a), 5), round(float(b), 5)] for a, b in centres],
        "bands": band_names,
        "null_weight": null_weight,
        "train_rows_without_gps": int((train & ~has_gps).sum()),
        "normalisation": round(float(1.0 / mean), 6),
        "share_within_km": near_km,
        "share_expected": round(share_expected, 4),
        "share_simulated_epoch": round(share_simulated, 4),
        "warnings": warnings,
    }}
    if refused.entries:
        info.extra["weights"]["quarantined"] = dict(refused.reasons())
    with folder as tmp:
        carry_files(src, tmp, df)
        refused.out = tmp
        if refused.entries:
            refused.write()
        return contract.write_dataset(tmp, df, info)
