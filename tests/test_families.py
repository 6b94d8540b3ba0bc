"""Scene families (roadvision.data.synth.families): valid data, measurably different looks, labels
that stay on the paint, and the family recorded per row.

Tiny images and a few dozen renders keep this file near 15 s on one core.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from roadvision.data.contract import read_manifest
from roadvision.data.synth import FAMILY_NAMES, generate, parse_synth_uri, render_sample
from roadvision.data.synth.families import family_for, parse_families
from roadvision.data.synth.families.geometry import clothoid_path
from roadvision.data.synth.families.materials import spectral_noise
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError

SIZE = {"lanes": (64, 64), "roadwork": (96, 96)}


@pytest.fixture(scope="module")
def renders() -> dict[tuple[str, str], list[dict]]:
    """8 samples per (task, family); index i shares its classic draws across families."""
    return {(task, fam): [render_sample(task, 0, i, *SIZE[task], 4, fam) for i in range(8)]
            for task in SIZE for fam in FAMILY_NAMES}


@pytest.mark.parametrize("task", ["lanes", "roadwork"])
def test_every_family_writes_valid_contract_data(tmp_path, task):
    info = generate(task, 10, seed=2, out=tmp_path / "d", size="tiny", family="all")
    assert validate_dataset(tmp_path / "d").ok
    df = read_manifest(tmp_path / "d")
    # 10 rows over 5 families: each family exactly twice (stratified), recorded per row
    assert df["family"].value_counts().to_dict() == {f: 2 for f in FAMILY_NAMES}
    assert info.extra["families"] == list(FAMILY_NAMES)
    if task == "roadwork":  # the label plan does not depend on the family
        assert df["label"].sum() == 5


def test_classic_is_the_default_and_families_are_deterministic():
    a = render_sample("lanes", 4, 3, 64, 64)
    b = render_sample("lanes", 4, 3, 64, 64, 4, "classic")
    assert a["family"] == "classic" and np.array_equal(a["image"], b["image"])
    for fam in FAMILY_NAMES:
        x = render_sample("roadwork", 4, 3, 96, 96, 4, fam)["image"]
        assert np.array_equal(x, render_sample("roadwork", 4, 3, 96, 96, 4, fam)["image"])


def _image_features(img: np.ndarray) -> list[float]:
    g = img.astype(np.float32).mean(axis=2)
    h, w = g.shape
    centre = g[h // 4:3 * h // 4, w // 4:3 * w // 4].mean()
    corners = np.mean([g[:h // 6, :w // 6].mean(), g[:h // 6, -w // 6:].mean(),
                       g[-h // 6:, :w // 6].mean(), g[-h // 6:, -w // 6:].mean()])
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    rgb = img.astype(np.float32)
    return [float(np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean()), corners / (centre + 1e-6),
            _blockiness(img), hsv[..., 1].mean(), hsv[..., 1].std(), g.mean(), g.std(),
            float(rgb[..., 0].mean() - rgb[..., 2].mean())]


def _blockiness(img: np.ndarray) -> float:
    """Mean step across 8x8 JPEG block borders / mean step elsewhere (1.0 = no blocks)."""
    dx = np.abs(np.diff(img.astype(np.float32).mean(axis=2), axis=1))
    border = np.arange(dx.shape[1]) % 8 == 7
    return float(dx[:, border].mean() / (dx[:, ~border].mean() + 1e-6))


def _vignette(img: np.ndarray) -> float:
    return _image_features(img)[1]


@pytest.mark.parametrize("task", ["lanes", "roadwork"])
def test_families_are_told_apart_by_image_statistics(renders, task):
    # Leave-one-out nearest centroid on 8 simple statistics: chance is 1/5.
    x, y = [], []
    for k, fam in enumerate(FAMILY_NAMES):
        for s in renders[task, fam]:
            x.append(_image_features(s["image"]))
            y.append(k)
    z = np.asarray(x)
    z = (z - z.mean(0)) / (z.std(0) + 1e-9)
    labels = np.asarray(y)
    hits = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        cents = np.stack([z[keep & (labels == k)].mean(0) for k in range(len(FAMILY_NAMES))])
        hits += int(np.argmin(((cents - z[i]) ** 2).sum(1)) == labels[i])
    assert hits / len(labels) >= 0.35


@pytest.mark.parametrize("task", ["lanes", "roadwork"])
def test_each_family_moves_the_statistic_it_models(renders, task):
    classic = renders[task, "classic"]
    # The same index has the same scene draws: compare pairwise.
    blocky = [_blockiness(d["image"]) > _blockiness(c["image"]) + 0.2
              for c, d in zip(classic, renders[task, "degraded"], strict=True)]
    darker_corners = [_vignette(d["image"]) < _vignette(c["image"]) - 0.1
                      for c, d in zip(classic, renders[task, "camera"], strict=True)]
    assert sum(blocky) >= 7 and sum(darker_corners) >= 6
    # Procedural palettes vary per sample where a city's palette is fixed.
    spread = {f: np.std([s["image"].reshape(-1, 3).mean(0) for s in renders[task, f]], axis=0)
              .mean() for f in ("classic", "procedural")}
    assert spread["procedural"] > spread["classic"] * 0.9
    geometry = renders[task, "geometry"]
    moved = [np.abs(g["image"].astype(int) - c["image"].astype(int)).mean() > 8
             for c, g in zip(classic, geometry, strict=True)]
    assert sum(moved) >= 6


def _ring_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean luminance on the lane pixels minus that of a 2-3 px ring around them."""
    lum = image.astype(np.float32).mean(axis=2)
    on = mask > 0
    near = cv2.dilate(on.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    close = cv2.dilate(on.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ring = near & ~close
    return float(lum[on].mean() - lum[ring].mean())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_lane_masks_stay_on_the_painted_lines(family):
    aligned, shifted = [], []
    for i in range(40):
        s = render_sample("lanes", 5, i, 96, 96, 4, family)
        if (s["mask"] > 0).sum() < 40:
            continue
        aligned.append(_ring_contrast(s["image"], s["mask"]))
        shifted.append(_ring_contrast(s["image"], np.roll(s["mask"], 3, axis=1)))
        if len(aligned) == 6:
            break
    assert len(aligned) >= 4
    # paint is brighter than the asphalt around it, and a 3 px shift loses that
    assert np.median(aligned) > 8 and np.median(aligned) > np.median(shifted) + 8


def test_clothoid_curvature_is_continuous_and_bounded():
    pts = clothoid_path(np.random.default_rng(0), np.zeros(2), 0.3, 400, min_radius=50.0)
    step = np.diff(pts, axis=0)
    heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
    kappa = np.diff(heading)
    assert np.allclose(np.hypot(*step.T), 1.0, atol=1e-6)
    assert np.abs(kappa).max() <= 1 / 50.0 + 1e-9
    # continuous: no step anywhere near the 2/R jump a circle-arc spline makes at its joints
    assert np.abs(np.diff(kappa)).max() < 0.1 * 2 / 50.0


def test_spectral_noise_is_normalised_and_tiles():
    n = spectral_noise(np.random.default_rng(1), 64, 64, 1.5, 2.0)
    assert abs(float(n.mean())) < 1e-4 and abs(float(n.std()) - 1) < 1e-3
    # periodic: the jump across the wrap is like any neighbouring step
    assert np.abs(n[:, 0] - n[:, -1]).mean() < 2 * np.abs(np.diff(n, axis=1)).mean()


def test_family_plan_is_balanced_and_independent_of_n():
    names = FAMILY_NAMES
    plan = [family_for(3, 1, i, names) for i in range(50)]
    assert {plan.count(f) for f in names} == {10}
    assert plan[:7] == [family_for(3, 1, i, names) for i in range(7)]


def test_family_choice_errors_and_uri():
    assert parse_families("camera, degraded") == ("camera", "degraded")
    assert parse_families("all") == FAMILY_NAMES
    with pytest.raises(UserError, match="unknown scene family.*valid: classic"):
        parse_families("cartoon")
    task, opts = parse_synth_uri("synth://lanes?n=20&family=classic,camera")
    assert task == "lanes" and opts["family"] == "classic,camera"
    with pytest.raises(UserError, match="data_uri: synth:// unknown scene family"):
        parse_synth_uri("synth://lanes?family=nope")
