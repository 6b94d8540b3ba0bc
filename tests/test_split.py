"""split_dataset: no train sample within 100 m of val/test, held-out cities only in test,
fractions and label balance about right, deterministic per seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roadvision.data.contract import read_info, read_manifest
from roadvision.data.split import split_dataset
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError
from tests._fixtures import make_dataset

CITIES = {"pittsburgh": (40.44, -79.99), "boston": (42.36, -71.06), "austin": (30.27, -97.74)}


def _metres(lat1, lon1, lat2, lon2):
    """Independent haversine (numpy), in metres, all pairs."""
    p1, p2 = np.radians(lat1)[:, None], np.radians(lat2)[None, :]
    dl = np.radians(lon2)[None, :] - np.radians(lon1)[:, None]
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6_371_000 * np.arcsin(np.sqrt(a))


def _geo_rows(n=240, seed=0):
    """Rows in three cities; a third come in tight bursts (several photos within ~40 m),
    like a car taking pictures along a street; a tenth have no GPS."""
    rng = np.random.default_rng(seed)
    rows = []
    names = list(CITIES)
    while len(rows) < n:
        city = names[len(rows) % 3]
        lat0, lon0 = CITIES[city]
        lat, lon = lat0 + rng.normal(0, 0.05), lon0 + rng.normal(0, 0.05)
        burst = int(rng.integers(2, 5)) if rng.random() < 0.3 else 1
        for _ in range(burst):
            gps = rng.random() > 0.1
            rows.append({"city": city, "label": int(rng.random() < 0.4),
                         "lat": lat + rng.normal(0, 0.0002) if gps else None,
                         "lon": lon + rng.normal(0, 0.0002) if gps else None})
    return rows[:n]


@pytest.fixture(scope="module")
def geo_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    make_dataset(root, "roadwork", n=240, rows=_geo_rows(), size=(8, 8))
    return root


def test_no_train_sample_near_val_or_test(geo_dataset, tmp_path):
    info = split_dataset(geo_dataset, tmp_path / "out", seed=1)
    df = read_manifest(tmp_path / "out")
    gps = df[df["lat"].notna()]
    train, other = gps[gps["split"] == "train"], gps[gps["split"] != "train"]
    d = _metres(train["lat"].to_numpy(float), train["lon"].to_numpy(float),
                other["lat"].to_numpy(float), other["lon"].to_numpy(float))
    assert d.min() >= 100.0
    # ...and the data really had near neighbours to separate (the test is not vacuous).
    all_d = _metres(*(gps[c].to_numpy(float) for c in ("lat", "lon")),
                    *(gps[c].to_numpy(float) for c in ("lat", "lon")))
    assert ((all_d < 100) & (all_d > 0)).sum() > 20
    leakage = json.loads((tmp_path / "out" / "leakage.json").read_text())
    assert leakage["near_pairs"] == leakage["shared_ids"] == leakage["shared_sha256"] == 0
    assert info.extra["split"]["leakage"]["near_pairs"] == 0
    assert validate_dataset(tmp_path / "out").ok


def test_fractions_and_label_balance(geo_dataset, tmp_path):
    info = split_dataset(geo_dataset, tmp_path / "out", val_fraction=0.1, test_fraction=0.2)
    df = read_manifest(tmp_path / "out")
    shares = df["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.05
    assert abs(shares["val"] - 0.1) < 0.05
    assert abs(shares["test"] - 0.2) < 0.05
    overall = df["label"].mean()
    for split in ("train", "val", "test"):
        assert abs(df.loc[df["split"] == split, "label"].mean() - overall) < 0.08
    counts = info.extra["split_counts"]
    assert counts == {s: int((df["split"] == s).sum()) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 240
    assert df.loc[df["lat"].isna(), "split"].notna().all()  # no-GPS rows are split too


def test_holdout_cities_only_in_test(geo_dataset, tmp_path):
    split_dataset(geo_dataset, tmp_path / "out", holdout_cities=["Boston"])
    df = read_manifest(tmp_path / "out")
    assert (df.loc[df["city"] == "boston", "split"] == "test").all()
    rest = df[df["city"] != "boston"]
    assert set(rest["split"]) == {"train", "val", "test"}
    share = rest["split"].value_counts(normalize=True)  # fractions apply to the other cities
    assert abs(share["train"] - 0.7) < 0.06


def test_deterministic_per_seed(geo_dataset, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        runs[name] = split_dataset(geo_dataset, tmp_path / name, seed=seed)
    splits = {k: read_manifest(tmp_path / k)["split"].tolist() for k in runs}
    assert splits["a"] == splits["b"] and runs["a"].content_hash == runs["b"].content_hash
    assert splits["a"] != splits["c"]


def test_identical_images_stay_together(tmp_path):
    make_dataset(tmp_path / "src", n=30, size=(8, 8))
    df = read_manifest(tmp_path / "src")
    df.loc[5, "sha256"] = df.loc[4, "sha256"]  # a duplicate photo under another id
    df.loc[4:5, ["lat", "lon"]] = None
    from roadvision.data.contract import write_dataset

    write_dataset(tmp_path / "src", df, read_info(tmp_path / "src"))
    split_dataset(tmp_path / "src", tmp_path / "out")
    out = read_manifest(tmp_path / "out")
    assert out.loc[4, "split"] == out.loc[5, "split"]


def test_bad_arguments(geo_dataset, tmp_path):
    with pytest.raises(UserError, match="atlantis.*cities present: austin, boston, pittsburgh"):
        split_dataset(geo_dataset, tmp_path / "o", holdout_cities=["atlantis"])
    with pytest.raises(UserError, match="together below 1"):
        split_dataset(geo_dataset, tmp_path / "o", val_fraction=0.6, test_fraction=0.5)


def test_files_are_linked_into_the_output(geo_dataset, tmp_path):
    split_dataset(geo_dataset, tmp_path / "out")
    df = read_manifest(tmp_path / "out")
    assert all((tmp_path / "out" / p).is_file() for p in df["image"])
    assert pd.api.types.is_string_dtype(df["split"])


def test_lanes_split_is_stratified_by_lane_class_presence(tmp_path):
    make_dataset(tmp_path / "src", "lanes", n=30, size=(12, 12))  # classes cycle 1, 2, 3
    info = split_dataset(tmp_path / "src", tmp_path / "out", seed=2)
    strata = info.extra["split"]["strata"]
    for split in ("train", "val", "test"):
        for name in ("has_white_solid", "has_white_dashed", "has_yellow_solid"):
            assert strata[split][name] >= 1, (split, name, strata)
    assert strata["train"]["rows"] == 21 and strata["val"]["rows"] == 3
