"""GPS weighting: target regions (never test rows) decide train weights; bad targets are named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadvision.data.contract import read_manifest
from roadvision.data.validate import validate_dataset
from roadvision.data.weights import gps_weights, haversine_km, parse_targets, target_centres
from roadvision.errors import UserError
from tests._fixtures import make_dataset

PITTSBURGH = (40.44, -79.99)


# -- parse_targets --------------------------------------------------------------------------
def test_parse_inline_and_files(tmp_path):
    assert parse_targets("40.44,-79.99; 42.36,-71.06") == [(40.44, -79.99), (42.36, -71.06)]
    lines = tmp_path / "t.txt"
    lines.write_text("# deployment regions\n40.44, -79.99\n\n42.36,-71.06  # boston\n")
    assert parse_targets(str(lines)) == [(40.44, -79.99), (42.36, -71.06)]
    pairs = tmp_path / "t.json"
    pairs.write_text(json.dumps([[40.44, -79.99], {"lat": 42.36, "lon": -71.06}]))
    assert parse_targets(str(pairs)) == [(40.44, -79.99), (42.36, -71.06)]


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("40.44,-79.99;95,10", "entry 2: '95,10': latitude 95.0 out of range"),
    ("40.44,-200", "longitude -200.0 out of range"),
    ("pittsburgh", "'pittsburgh' is not 'lat,lon'"),
    ("40.44,-79.99;;", "entry 2: '' is not 'lat,lon'"),
    ("regions/missing.txt", "does not exist"),
])
def test_bad_targets_name_the_entry(text, needle):
    with pytest.raises(UserError) as info:
        parse_targets(text)
    assert needle in str(info.value)


def test_bad_line_in_a_file_names_the_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("40.44,-79.99\n40.5;x\n")
    with pytest.raises(UserError, match="t.txt line 2: '40.5;x'"):
        parse_targets(str(path))


# -- weights --------------------------------------------------------------------------------
def _dataset(root, test_far=False):
    """Train rows at known distances from Pittsburgh; val/test rows elsewhere."""
    lat0, lon0 = PITTSBURGH
    # offsets in degrees of latitude (~111 km each): ~10 km, ~110 km, ~330 km, ~1100 km
    train = [0.09, 0.09, 1.0, 3.0, 10.0, None]
    rows = [{"lat": None if d is None else lat0 + d, "lon": None if d is None else lon0,
             "split": "train"} for d in train]
    rows += [{"lat": 10.0 if test_far else lat0, "lon": lon0, "split": "test"},
             {"lat": lat0 + 0.5, "lon": lon0, "split": "val"}]
    return make_dataset(root, n=len(rows), rows=rows, size=(8, 8))


def test_weights_follow_distance_bands_and_average_one_on_train(tmp_path):
    _dataset(tmp_path / "src")
    info = gps_weights(tmp_path / "src", tmp_path / "out", targets=[PITTSBURGH])
    df = read_manifest(tmp_path / "out")
    train = df[df["split"] == "train"]
    w = train["weight"].to_numpy(float)
    assert abs(w.mean() - 1.0) < 1e-9
    raw = np.array([5.0, 5.0, 2.5, 1.0, 0.3, 1.0])  # bands; NULL GPS -> null_weight 1.0
    np.testing.assert_allclose(w, raw / raw.mean())
    assert (df.loc[df["split"] != "train", "weight"] == 1.0).all()
    summary = info.extra["weights"]
    assert [b["train_rows"] for b in summary["bands"]] == [2, 1, 1, 1]
    assert summary["train_rows_without_gps"] == 1
    assert validate_dataset(tmp_path / "out").ok


def test_test_rows_never_influence_train_weights(tmp_path):
    _dataset(tmp_path / "a", test_far=False)
    _dataset(tmp_path / "b", test_far=True)
    gps_weights(tmp_path / "a", tmp_path / "wa", targets=[PITTSBURGH])
    gps_weights(tmp_path / "b", tmp_path / "wb", targets=[PITTSBURGH])
    wa, wb = read_manifest(tmp_path / "wa"), read_manifest(tmp_path / "wb")
    train = wa["split"] == "train"
    np.testing.assert_array_equal(wa.loc[train, "weight"], wb.loc[train, "weight"])


def test_epoch_share_warning_only_when_targets_are_poorly_covered(tmp_path):
    _dataset(tmp_path / "src")
    near = gps_weights(tmp_path / "src", tmp_path / "near", targets=[PITTSBURGH])
    far = gps_weights(tmp_path / "src", tmp_path / "far", targets=[(48.14, 11.58)])  # Munich
    assert near.extra["weights"]["share_expected"] > 0.6
    assert far.extra["weights"]["share_simulated_epoch"] == 0.0
    warning = far.extra["weights"]["warnings"][0]
    assert "0%" in warning and "no training row is within 100 km" in warning
    # far from every target: all rows in the same band, so weights are uniform
    far_w = read_manifest(tmp_path / "far")
    gps = far_w[(far_w["split"] == "train") & far_w["lat"].notna()]
    assert gps["weight"].nunique() == 1


def test_simulated_epoch_share_matches_expected_share(tmp_path):
    rng = np.random.default_rng(0)
    lat0, lon0 = PITTSBURGH
    rows = [{"lat": lat0 + d, "lon": lon0, "split": "train"}
            for d in rng.choice([0.1, 1.2, 4.0, 9.0], size=200)]
    make_dataset(tmp_path / "src", n=200, rows=rows, size=(8, 8))
    summary = gps_weights(tmp_path / "src", tmp_path / "out", targets=[PITTSBURGH],
                          seed=1).extra["weights"]
    assert abs(summary["share_simulated_epoch"] - summary["share_expected"]) < 0.1
    assert bool(summary["warnings"]) == (summary["share_simulated_epoch"] < 0.7)


def test_many_targets_are_reduced_with_kmeans():
    rng = np.random.default_rng(0)
    points = [(40.44 + rng.normal(0, 0.05), -79.99 + rng.normal(0, 0.05)) for _ in range(30)]
    points += [(48.14 + rng.normal(0, 0.05), 11.58 + rng.normal(0, 0.05)) for _ in range(30)]
    centres = target_centres(points, max_centres=2, seed=0)
    d = haversine_km(centres[:, None, 0], centres[:, None, 1], np.array([40.44, 48.14]),
                     np.array([-79.99, 11.58]))
    assert sorted(d.min(axis=0)) == pytest.approx([0, 0], abs=10)  # one centre per city


def test_without_split_every_row_is_weighted_and_noted(tmp_path):
    make_dataset(tmp_path / "src", n=4, size=(8, 8))
    info = gps_weights(tmp_path / "src", tmp_path / "out", targets=[PITTSBURGH])
    assert "no split column" in info.extra["weights"]["scope"]
    assert abs(read_manifest(tmp_path / "out")["weight"].mean() - 1.0) < 1e-9


def test_library_checks_targets_and_bands(tmp_path):
    _dataset(tmp_path / "src")
    with pytest.raises(UserError, match="latitude 91"):
        gps_weights(tmp_path / "src", tmp_path / "o", targets=[(91.0, 0.0)])
    with pytest.raises(UserError, match="no target points"):
        gps_weights(tmp_path / "src", tmp_path / "o", targets=[])
    with pytest.raises(UserError, match="must be finite and >= 0"):
        gps_weights(tmp_path / "src", tmp_path / "o", targets=[PITTSBURGH],
                    bands=((50.0, -1.0), (float("inf"), 1.0)))
