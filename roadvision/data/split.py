"""Geo-aware, stratified, deterministic train/val/test split.

Random splits of geo-correlated street and aerial images overstate accuracy: two photos taken
30 m apart land on both sides of the split and the model is "tested" on what it trained on.
The rule here is ROADWork's ``gps_split``, made strict:

1. Rows are grouped into *clusters* that must stay together: connected components of the graph
   that links any two samples within ``min_distance_m`` (haversine, scikit-learn BallTree), plus
   rows sharing an image sha256 or an id. So no train sample is within ``min_distance_m`` of a
   val/test sample, and no image appears in two splits.
2. ``holdout_cities`` go entirely to test, with every cluster touching them (ROADWork's
   "train on some cities, test on others" protocol).
3. The remaining clusters are assigned greedily, largest first, in a seeded order, each to the
   split where it best moves the counts towards the target fractions, per stratum: the label
   for roadwork, lane-class presence for lanes. Fractions apply to the non-holdout rows.
4. Rows without GPS are singleton clusters placed by the same rule; their order is a seeded
   hash of the id, so the result does not depend on the manifest's row order.

The output is a data set folder (files hard-linked) with a ``split`` column, the counts in
``dataset.json`` (``extra.split_counts``, ``extra.split``) and ``leakage.json``: shared ids,
shared sha256 and train-to-val/test pairs closer than ``min_distance_m``. It must be empty;
it is computed independently of the assignment, as a check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.data import contract
from roadvision.data.confine import read_confined
from roadvision.data.contract import DatasetInfo
from roadvision.data.fileops import carry_files, check_out_dir, safe_relpath
from roadvision.data.images import ImageError, decode_mask
from roadvision.data.output import OutputFolder
from roadvision.data.quarantine import drop_unconfined
from roadvision.errors import UserError

__all__ = ["EARTH_RADIUS_M", "SPLITS", "leakage_report", "parse_holdout_cities", "split_dataset"]

SPLITS = ("train", "val", "test")
EARTH_RADIUS_M = 6_371_008.8
LEAKAGE_FILE = "leakage.json"


def parse_holdout_cities(text: str) -> list[str]:
    """The pipeline's ``holdout_cities`` (``"city_a,city_b"``) -> names; errors name it."""
    cities = [c.strip() for c in (text or "").split(",") if c.strip()]
    if len(set(cities)) != len(cities):
        raise UserError(f"holdout_cities: {text!r} names a city twice")
    return cities


def split_dataset(src: str | Path, out: str | Path, *, holdout_cities: Sequence[str] = (),
                  val_fraction: float = 0.10, test_fraction: float = 0.20,
                  min_distance_m: float = 100.0, seed: int = 0,
                  stratify: bool = True, overwrite: bool = False) -> DatasetInfo:
    """Write ``out`` = ``src`` plus a ``split`` column; returns the new DatasetInfo.

    Defaults are 70/10/20 (issue 2). ``holdout_cities`` accepts names or comma-separated lists.
    Rows whose file is a symbolic link or lies outside ``src`` are left out and listed in
    ``out/quarantine.json`` (``outside_root``). ``out`` is written aside and swapped in whole;
    a non-empty ``out`` that is not an earlier split of the same inputs needs ``overwrite``.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"fractions val={val_fraction}, test={test_fraction}: each must be in "
                        "[0, 1) and together below 1 (train keeps the rest)")
    if min_distance_m < 0:
        raise UserError(f"--min-distance-m {min_distance_m}: must be >= 0")
    src, out = Path(src), check_out_dir(out)
    info = contract.read_info(src)
    df = contract.read_manifest(src)
    if df.empty:
        raise UserError(f"{src}: the manifest has no rows")
    contract.check_gps(df, src / contract.MANIFEST)
    df, refused = drop_unconfined(src, df)
    folder = OutputFolder(out, command="data split", overwrite=overwrite, inputs={
        "source": str(src.resolve()), "content_hash": info.content_hash,
        "holdout_cities": sorted(map(str, holdout_cities)), "val_fraction": val_fraction,
        "test_fraction": test_fraction, "min_distance_m": min_distance_m, "seed": seed,
        "stratify": stratify})

    holdout = _holdout_mask(df, holdout_cities)
    groups = _groups(df, min_distance_m)
    forced = np.zeros(len(df), dtype=bool)
    for group_id in np.unique(groups[holdout]):
        forced |= groups == group_id  # a cluster touching a held-out city goes to test whole
    strata, strata_names = _strata(src, df, info, stratify)
    fractions = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    assignment = _assign(df, groups, forced, strata, fractions, seed)
    df = df.copy()
    df["split"] = pd.array([SPLITS[a] for a in assignment], dtype="string")

    leakage = leakage_report(df, min_distance_m)
    if leakage["shared_ids"] or leakage["shared_sha256"] or leakage["near_pairs"]:
        # Cannot happen by construction; refusing to write is safer than a leaky split.
        raise RuntimeError(f"split leakage detected: {json.dumps(leakage)[:500]}")

    counts = {s: int((df["split"] == s).sum()) for s in SPLITS}
    rest = ~forced
    realised = {s: round(float((assignment[rest] == i).mean()), 4) if rest.any() else 0.0
                for i, s in enumerate(SPLITS)}
    warnings = [f"{s}: got {realised[s]:.1%} of the non-holdout rows, target {fractions[i]:.1%} "
                "(large GPS clusters cannot be divided)" for i, s in enumerate(SPLITS)
                if rest.any() and abs(realised[s] - fractions[i]) > 0.05]
    pulled = int((forced & ~holdout).sum())
    if pulled:
        warnings.append(f"{pulled} row(s) of other cities lie within {min_distance_m:g} m of a "
                        "held-out city's rows and went to test with them")
    per_stratum = {s: {name: int(strata[assignment == i, k].sum())
                       for k, name in enumerate(strata_names)} for i, s in enumerate(SPLITS)}
    sizes = np.bincount(groups)
    info.extra = {**info.extra, "split_counts": counts, "split": {
        "rule": (f"gps clusters (no train sample within {min_distance_m:g} m of val/test, "
                 "identical images together), holdout cities -> test, greedy stratified by "
                 + (", ".join(strata_names) if stratify else "count only")),
        "seed": seed,
        "fractions": dict(zip(SPLITS, fractions.round(4).tolist(), strict=True)),
        "realised_fractions": realised,
        "min_distance_m": min_distance_m,
        "holdout_cities": sorted({c for c in df.loc[holdout, "city"].dropna().unique()}),
        "clusters": int(len(sizes)),
        "largest_cluster": int(sizes.max()),
        "rows_without_gps": int(df["lat"].isna().sum()),
        "rows_pulled_into_test": pulled,
        "strata": per_stratum,
        "warnings": warnings,
        "leakage": {k: v for k, v in leakage.items() if not k.endswith("_examples")},
    }}
    if refused.entries:
        info.extra["split"]["quarantined"] = dict(refused.reasons())
    with folder as tmp:
        carry_files(src, tmp, df)
        (tmp / LEAKAGE_FILE).write_text(json.dumps(leakage, indent=2) + "\n")
        refused.out = tmp
        if refused.entries:
            refused.write()
        return contract.write_dataset(tmp, df, info)


# -- grouping ------------------------------------------------------------------------------------
def _holdout_mask(df: pd.DataFrame, holdout_cities: Iterable[str]) -> np.ndarray:
    wanted = {c.strip().lower() for item in holdout_cities for c in str(item).split(",")
              if c.strip()}
    cities = df["city"].astype("string").str.strip().str.lower()
    present = set(cities.dropna().unique())
    unknown = sorted(wanted - present)
    if unknown:
        listed = ", ".join(sorted(present)) or "(no city column values)"
        raise UserError(f"--holdout-cities: {', '.join(unknown)} not in the data set; "
                        f"cities present: {listed}")
    return cities.isin(wanted).fillna(False).to_numpy(dtype=bool)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _radians(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return np.radians(np.column_stack([df["lat"].to_numpy(dtype=float)[rows],
                                       df["lon"].to_numpy(dtype=float)[rows]]))


def _groups(df: pd.DataFrame, min_distance_m: float) -> np.ndarray:
    """Cluster id per row (0..G-1): GPS neighbours, equal sha256 and equal ids joined."""
    n = len(df)
    uf = _UnionFind(n)
    has_gps = (df["lat"].notna() & df["lon"].notna()).to_numpy()
    gps_rows = np.flatnonzero(has_gps)
    if min_distance_m > 0 and len(gps_rows) > 1:
        from sklearn.neighbors import BallTree

        points = _radians(df, gps_rows)
        tree = BallTree(points, metric="haversine")
        radius = min_distance_m / EARTH_RADIUS_M
        for i, neighbours in enumerate(tree.query_radius(points, r=radius)):
            for j in neighbours:
                if j != i:
                    uf.union(int(gps_rows[i]), int(gps_rows[j]))
    for column in ("sha256", "id"):
        first: dict[str, int] = {}
        for i, value in enumerate(df[column].tolist()):
            if value is None or value is pd.NA:
                continue
            if value in first:
                uf.union(first[value], i)
            else:
                first[value] = i
    roots = np.array([uf.find(i) for i in range(n)])
    _, groups = np.unique(roots, return_inverse=True)
    return groups


# -- stratification ------------------------------------------------------------------------------
def _strata(src: Path, df: pd.DataFrame, info: DatasetInfo, stratify: bool
            ) -> tuple[np.ndarray, list[str]]:
    """Per-row stratum indicators (n x k); column 0 is always the row count."""
    columns = [np.ones(len(df))]
    names = ["rows"]
    if stratify and info.task == "roadwork":
        label = df["label"].fillna(-1).to_numpy(dtype=int)
        columns += [label == 0, label == 1]
        names += ["label_0", "label_1"]
    elif stratify and info.task == "lanes":
        presence = np.zeros((len(df), len(info.classes) - 1), dtype=bool)
        for i, rel in enumerate(df["mask"].tolist()):
            if rel is None or rel is pd.NA:
                continue
            try:
                data = read_confined(src, safe_relpath(rel))
                if data is None:
                    continue
                mask = decode_mask(data, len(info.classes))
            except (OSError, ValueError, ImageError):
                continue  # validation reports broken masks; the split only needs a best effort
            ids = np.unique(mask)
            presence[i, ids[ids > 0] - 1] = True
        columns += list(presence.T)
        names += [f"has_{c}" for c in info.classes[1:]]
    return np.column_stack(columns).astype(float), names


def _order_key(seed: int, text: str) -> int:
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:16], 16)


def _assign(df: pd.DataFrame, groups: np.ndarray, forced: np.ndarray, strata: np.ndarray,
            fractions: np.ndarray, seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per row; forced rows go to test."""
    assignment = np.full(len(df), 2, dtype=int)
    free = ~forced
    if not free.any():
        return assignment
    totals = strata[free].sum(axis=0)
    targets = fractions[:, None] * totals[None, :]  # (3, k)
    scale = 1.0 / np.maximum(totals, 1.0)  # each stratum counts equally, however rare
    current = np.zeros_like(targets)
    ids = df["id"].astype(str).tolist()
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(free):
        members.setdefault(int(groups[i]), []).append(int(i))
    order = sorted(members, key=lambda g: (-len(members[g]),
                                           _order_key(seed, min(ids[i] for i in members[g]))))
    for g in order:
        rows = members[g]
        add = strata[rows].sum(axis=0)
        before = ((current - targets) ** 2 * scale).sum(axis=1)
        after = ((current + add - targets) ** 2 * scale).sum(axis=1)
        cost = after - before
        cost[fractions <= 0] = np.inf  # a zero fraction means that split stays empty
        choice = int(np.argmin(cost))
        current[choice] += add
        assignment[rows] = choice
    return assignment


# -- leakage check -------------------------------------------------------------------------------
def leakage_report(df: pd.DataFrame, min_distance_m: float, max_examples: int = 20
                   ) -> dict[str, Any]:
    """Counts (and examples) of ids, sha256 values and near GPS pairs shared across splits."""
    report: dict[str, Any] = {}
    for column, key in (("id", "shared_ids"), ("sha256", "shared_sha256")):
        spread = df.dropna(subset=[column]).groupby(column)["split"].nunique()
        shared = spread[spread > 1]
        report[key] = int(len(shared))
        report[f"{key}_examples"] = [str(v) for v in shared.index[:max_examples]]
    train = np.flatnonzero(((df["split"] == "train") & df["lat"].notna()).to_numpy())
    other = np.flatnonzero((df["split"].isin(["val", "test"]) & df["lat"].notna()).to_numpy())
    pairs: list[dict[str, Any]] = []
    count = 0
    if min_distance_m > 0 and len(train) and len(other):
        from sklearn.neighbors import BallTree

        tree = BallTree(_radians(df, other), metric="haversine")
        hits, dists = tree.query_radius(_radians(df, train), r=min_distance_m / EARTH_RADIUS_M,
                                        return_distance=True)
        for i, (near, dist) in enumerate(zip(hits, dists, strict=True)):
            count += len(near)
            for j, d in zip(near, dist, strict=True):
                if len(pairs) < max_examples:
                    pairs.append({"train": str(df["id"].iloc[train[i]]),
                                  "other": str(df["id"].iloc[other[j]]),
                                  "distance_m": round(float(d) * EARTH_RADIUS_M, 2)})
    report["near_pairs"] = count
    report["near_pairs_examples"] = pairs
    report["min_distance_m"] = min_distance_m
    return report
