"""prepare_sample / collate / predict: the path from raw inputs to model inputs and results."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from _models import random_image

from roadvision.data.contract import VOCABULARIES
from roadvision.errors import UserError
from roadvision.models import collate, create_model, prepare_sample
from roadvision.runtime.inference import predict


@pytest.fixture(scope="module")
def rw():
    torch.manual_seed(0)
    return create_model("roadwork_tiny").eval()


@pytest.fixture(scope="module")
def lanes():
    torch.manual_seed(0)
    return create_model("lanes_tiny", input_size=32).eval()


def test_lanes_sample_normalised_with_cfg(lanes):
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[..., 0] = 255
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5] = 2
    sample = prepare_sample(lanes.cfg, image, None, mask)
    assert sample["image"].shape == (3, 20, 30) and sample["mask"].dtype == torch.long
    mean, std = lanes.cfg.mean, lanes.cfg.std
    assert sample["image"][0, 0, 0].item() == pytest.approx((1 - mean[0]) / std[0], rel=1e-5)
    assert sample["image"][1, 0, 0].item() == pytest.approx(-mean[1] / std[1], rel=1e-5)
    assert sample["mask"][5].eq(2).all()
    with pytest.raises(UserError, match="class id"):
        prepare_sample(lanes.cfg, image, None, np.full((20, 30), 7, dtype=np.uint8))
    with pytest.raises(UserError, match="shape"):
        prepare_sample(lanes.cfg, image, None, np.zeros((5, 5), dtype=np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 [[1, 2, 3]]])
def test_bad_images_are_user_errors(rw, bad):
    with pytest.raises(UserError):
        prepare_sample(rw.cfg, bad, None)


def test_small_image_gives_global_view_only(rw):
    sample = prepare_sample(rw.cfg, random_image(40, 50), None)
    s = rw.cfg.view_size
    assert sample["views"].shape == (1, 3, s, s)
    assert sample["view_mask"].tolist() == [True]


def test_large_image_gives_several_views(rw):
    sample = prepare_sample(rw.cfg, random_image(200, 300), None)
    v = sample["views"].shape[0]
    assert 1 < v <= rw.cfg.num_views


def test_metadata_encoding(rw):
    nulls = {f: len(VOCABULARIES[f]) for f in VOCABULARIES}
    sample = prepare_sample(rw.cfg, random_image(32, 32), {
        "lat": 40.44, "lon": -79.99, "weather": "Sunny", "daytime": "['Light']",
        "scene": None, "label": 1})
    assert sample["gps"].tolist() == pytest.approx([40.44, -79.99])
    assert bool(sample["gps_mask"])
    assert sample["weather"].item() == VOCABULARIES["weather"].index("clear")
    assert sample["daytime"].item() == VOCABULARIES["daytime"].index("day")
    assert sample["scene"].item() == nulls["scene"]
    assert sample["label"].item() == 1.0

    for empty in (None, {}, {"lat": math.nan, "lon": pd.NA, "weather": pd.NA, "daytime": "[]"}):
        s = prepare_sample(rw.cfg, random_image(32, 32), empty)
        assert not bool(s["gps_mask"]) and s["gps"].tolist() == [0.0, 0.0]
        assert all(s[f].item() == nulls[f] for f in nulls)
        assert "label" not in s
    s = prepare_sample(rw.cfg, random_image(32, 32), {"gps": "[40.0, -80.0]"})
    assert bool(s["gps_mask"]) and s["gps"].tolist() == [40.0, -80.0]


@pytest.mark.parametrize("meta, match", [({"weather": "volcanic"}, "weather"),
                                          ({"lat": 95.0, "lon": 0.0}, "range")])
def test_bad_metadata_is_user_error(rw, meta, match):
    with pytest.raises(UserError, match=match):
        prepare_sample(rw.cfg, random_image(32, 32), meta)


def test_collate_pads_views_with_mask(rw):
    a = prepare_sample(rw.cfg, random_image(32, 32), {"weather": "rainy"})
    b = dict(a)
    b["views"] = torch.randn(3, 3, 32, 32)
    b["view_mask"] = torch.ones(3, dtype=torch.bool)
    batch = collate([a, b])
    assert batch["views"].shape == (2, 3, 3, 32, 32)
    assert batch["view_mask"].tolist() == [[True, False, False], [True, True, True]]
    assert batch["weather"].shape == (2,) and batch["gps_mask"].shape == (2,)
    with pytest.raises(UserError):
        collate([])


def test_text_embedding_only_when_enabled():
    cfg = create_model("roadwork_tiny", use_text=True).cfg
    s = prepare_sample(cfg, random_image(32, 32), {"text": "traffic cones close the lane"})
    assert s["text_emb"].shape == (384,) and bool(s["text_mask"])
    assert s["text_emb"].norm().item() == pytest.approx(1.0, rel=1e-3)
    s2 = prepare_sample(cfg, random_image(32, 32), {"text": None})
    assert not bool(s2["text_mask"]) and s2["text_emb"].abs().sum() == 0
    off = prepare_sample(create_model("roadwork_tiny").cfg, random_image(32, 32), {"text": "x"})
    assert "text_emb" not in off


def test_predict_roadwork_and_lanes(rw, lanes):
    samples = [prepare_sample(rw.cfg, random_image(32 + i, 40, seed=i), None) for i in range(3)]
    results = predict(rw, samples, tta="flip")
    assert len(results) == 3
    for r in results:
        assert 0.0 <= r["probability"] <= 1.0
        assert r["label"] == int(r["probability"] >= rw.cfg.threshold)

    tiles = [prepare_sample(lanes.cfg, random_image(h, 40, seed=h)) for h in (24, 70, 24)]
    out = predict(lanes, tiles)
    assert [r["mask"].shape for r in out] == [(24, 40), (70, 40), (24, 40)]
    for r in out:
        assert r["mask"].dtype == np.uint8
        assert set(r["class_shares"]) == set(lanes.cfg.classes)
        assert sum(r["class_shares"].values()) == pytest.approx(1.0)
        shares = np.bincount(r["mask"].ravel(), minlength=4) / r["mask"].size
        assert r["class_shares"]["background"] == pytest.approx(shares[0])
