"""``dataset_stats``: figures checked against data sets whose answers are known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roadvision.data.contract import ContractError, DatasetInfo, classes_for, write_dataset
from roadvision.data.images import encode_jpeg, encode_png
from roadvision.data.stats import dataset_stats
from roadvision.data.synth import generate
from roadvision.errors import UserError


def _lanes_dataset(root: Path, masks: list[np.ndarray], cities: list[str | None]) -> Path:
    """A hand-made lanes data set: known masks, so the pixel shares are known exactly."""
    rows = []
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (mask, city) in enumerate(zip(masks, cities, strict=True)):
        h, w = mask.shape
        image = encode_jpeg(np.full((h, w, 3), 90, np.uint8))
        (root / f"images/{i}.jpg").write_bytes(image)
        (root / f"masks/{i}.png").write_bytes(encode_png(mask))
        rows.append({"id": f"r{i}", "image": f"images/{i}.jpg", "mask": f"masks/{i}.png",
                     "city": city, "width": w, "height": h, "sha256": "0" * 64,
                     "lat": 1.0 if i % 2 else None, "lon": 2.0 if i % 2 else None,
                     "scene": "urban" if i == 0 else None, "source": "test"})
    write_dataset(root, pd.DataFrame(rows), DatasetInfo("lanes", classes_for("lanes")))
    return root


def test_lane_pixel_shares_exact(tmp_path):
    a = np.zeros((10, 20), np.uint8)
    a[0, :10] = 1  # 10 white_solid pixels
    a[5, :4] = 3  # 4 yellow_solid
    b = np.zeros((20, 10), np.uint8)
    b[:6, 0] = 2  # 6 white_dashed
    root = _lanes_dataset(tmp_path / "d", [a, b], ["oslo", "berlin"])
    stats = dataset_stats(root)
    total = 400
    assert stats["samples"] == 2 and stats["task"] == "lanes" and stats["masks_read"] == 2
    assert stats["lane_pixel_share"] == pytest.approx(20 / total)
    assert stats["pixel_share.white_solid"] == pytest.approx(10 / total)
    assert stats["pixel_share.white_dashed"] == pytest.approx(6 / total)
    assert stats["pixel_share.yellow_solid"] == pytest.approx(4 / total)
    assert stats["pixel_share.background"] == pytest.approx(380 / total)
    assert stats["background_to_lane"] == pytest.approx(19.0)
    assert stats["null_rate.gps"] == 0.5 and stats["null_rate.scene"] == 0.5
    assert stats["null_rate.weather"] == 1.0
    assert stats["cities"] == 2 and stats["city_counts"] == "berlin:1 oslo:1"
    assert stats["image_size"] == "10x10..20x20"
    assert dataset_stats(root, max_masks=1)["lane_pixel_share"] == pytest.approx(14 / 200)


def test_roadwork_stats_match_the_manifest(tmp_path):
    generate("roadwork", 20, seed=4, out=tmp_path / "rw", size="tiny")
    df = pd.read_parquet(tmp_path / "rw" / "manifest.parquet")
    stats = dataset_stats(tmp_path / "rw")
    assert stats["synthetic"] is True and stats["source"] == "synth:tiny"
    assert stats["positive_share"] == pytest.approx(df["label"].mean())
    assert stats["positives"] == int(df["label"].sum())
    for name in ("weather", "daytime", "scene", "text"):
        assert stats[f"null_rate.{name}"] == pytest.approx(df[name].isna().mean())
    assert stats["null_rate.gps"] == pytest.approx(df["lat"].isna().mean())
    counts = dict(item.split(":") for item in stats["city_counts"].split())
    assert sum(map(int, counts.values())) == 20 and len(counts) == stats["cities"]
    assert stats["image_size"] == "96x96"
    assert "lane_pixel_share" not in stats


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="no such data set folder"):
        dataset_stats(tmp_path / "missing")
    bad = np.zeros((4, 4), np.uint8)
    bad[0, 0] = 9  # out of the 4-class range
    root = _lanes_dataset(tmp_path / "d", [bad], [None])
    with pytest.raises(ContractError, match=r"masks/0\.png.*valid ids are 0\.\.3"):
        dataset_stats(root)
