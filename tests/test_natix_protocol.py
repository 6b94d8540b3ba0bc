"""The NATIX validator's scoring and queries (natixnetwork/streetvision-subnet), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from roadvision.errors import UserError
from roadvision.evaluation.natix import (
    NATIX_SIZE,
    jpeg_roundtrip,
    natix_augment,
    natix_hook,
    natix_level,
    natix_pipeline,
    natix_rolling,
    natix_round,
    natix_scores,
    natix_stream,
)


def test_half_is_no_roadwork():
    # np.round: 0.5 -> 0 (half to even), anything above -> 1
    assert natix_round(np.array([0.0, 0.49, 0.5, 0.5000001, 1.0])).tolist() == [0, 0, 0, 1, 1]


def test_rolling_windows_by_hand():
    # 12 queries; labels alternate 1, 0, ...; the model answers 0.5 (= 0) on the first two
    labels = np.array([1, 0] * 6)
    probs = np.array([0.5, 0.5] + [0.9, 0.1] * 5)
    r = natix_rolling(labels, probs)
    # query 1: one label class -> MCC 0; accuracy 0/1; reward (0 + 0) ** 3
    assert r["mcc_100"][0] == 0.0 and r["accuracy_10"][0] == 0.0 and r["reward"][0] == 0.0
    # query 2: predictions 0, 0 hold one class -> MCC 0; accuracy 1/2
    assert r["mcc_100"][1] == 0.0 and r["accuracy_10"][1] == 0.5
    assert r["reward"][1] == pytest.approx((0.5 * 0.5) ** 3)
    # query 3: labels 1 0 1, preds 0 0 1: tp 1, tn 1, fn 1, fp 0 -> MCC 1/sqrt(1*2*2*1) = 0.5
    assert r["mcc_100"][2] == pytest.approx(0.5)
    assert r["accuracy_10"][2] == pytest.approx(2 / 3)
    assert r["reward"][2] == pytest.approx((0.25 + 1 / 3) ** 3)
    # query 12: the 10-window (queries 3-12) is all correct; the 100-window still holds the
    # miss: tp 5, tn 6, fn 1, fp 0 -> MCC 30 / sqrt(5 * 6 * 6 * 7)
    assert r["accuracy_10"][11] == 1.0
    expected_mcc = 30 / np.sqrt(5 * 6 * 6 * 7)
    assert r["mcc_100"][11] == pytest.approx(expected_mcc)
    assert r["reward"][11] == pytest.approx((0.5 * expected_mcc + 0.5) ** 3)


def test_mcc_window_is_the_last_100_and_clamped_at_zero():
    labels = np.array([1, 0] * 60)  # 120 queries
    # the first 20 all wrong, the last 100 all right: the 100-window at the end is perfect
    probs = np.where(labels == 1, 0.9, 0.1).astype(float)
    probs[:20] = 1.0 - probs[:20]
    r = natix_rolling(labels, probs)
    assert r["mcc_100"][-1] == pytest.approx(1.0)
    assert r["mcc_100"][19] == 0.0  # MCC -1 clamped at 0
    scores = natix_scores(labels, probs)
    assert scores["windows_full"] and scores["queries"] == 120
    assert scores["reward_last"] == pytest.approx(1.0)
    # steady state = queries 100..120 (index 99 on): mean over those 21 queries
    assert scores["reward"] == pytest.approx(float(r["reward"][99:].mean()))
    # over all 120: tp 50, fn 10, tn 50, fp 10 -> (50 * 50 - 10 * 10) / 60 ** 2
    assert scores["mcc@0.5"] == pytest.approx((50 * 50 - 10 * 10) / 60**2)


def test_probability_outside_unit_interval_scores_zero():
    r = natix_rolling(np.array([1, 0]), np.array([1.2, 0.0]))
    assert r["reward"][0] == 0.0


def test_stream_draws_labels_half_and_half_and_is_seeded():
    labels = np.array([0] * 90 + [1] * 10)  # imbalanced rows, balanced queries
    stream = natix_stream(labels, 2000, seed=3)
    assert stream.tolist() == natix_stream(labels, 2000, seed=3).tolist()
    assert stream.tolist() != natix_stream(labels, 2000, seed=4).tolist()
    assert 0.45 < labels[stream].mean() < 0.55
    with pytest.raises(UserError, match="both labels"):
        natix_stream(np.zeros(5))


def test_levels_drawn_a_quarter_each_and_reproducible():
    levels = [natix_level(i, seed=0) for i in range(4000)]
    counts = np.bincount(levels, minlength=4) / 4000
    assert np.all(np.abs(counts - 0.25) < 0.03), counts
    assert levels[:50] == [natix_level(i, seed=0) for i in range(50)]
    assert levels[:50] != [natix_level(i, seed=1) for i in range(50)]


def _photo() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()[::2, ::1]  # 256x512: not square


def test_level0_is_centre_square_resized():
    img = _photo()
    out = natix_augment(img, 0, np.random.default_rng(0))
    assert out.shape == (NATIX_SIZE, NATIX_SIZE, 3)
    # the centre square, not the whole squashed image: the left quarter is cut away
    from PIL import Image

    h, w = img.shape[:2]
    square = img[:, (w - h) // 2:(w - h) // 2 + h]
    ref = np.asarray(Image.fromarray(square).resize((NATIX_SIZE, NATIX_SIZE), Image.BILINEAR))
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert natix_pipeline(0)(image=img)["image"].tobytes() == out.tobytes()


def test_higher_levels_change_the_image_and_stay_224():
    img = _photo()
    plain = natix_augment(img, 0, np.random.default_rng(0)).astype(int)
    for level in (1, 2, 3):
        outs = [natix_augment(img, level, np.random.default_rng(s)) for s in range(3)]
        assert all(o.shape == (NATIX_SIZE, NATIX_SIZE, 3) and o.dtype == np.uint8 for o in outs)
        assert all(np.abs(o.astype(int) - plain).mean() > 5 for o in outs)
        assert outs[0].tobytes() != outs[1].tobytes()  # the seed moves angle and crop


def test_hook_is_the_jpeg_of_its_level_and_reproducible():
    img = _photo()
    hook = natix_hook(seed=0)
    for q in range(6):
        a, b = hook(img, q), hook(img, q)
        assert a.shape == (NATIX_SIZE, NATIX_SIZE, 3) and a.tobytes() == b.tobytes()
    q0 = next(q for q in range(50) if natix_level(q, seed=0) == 0)
    level0 = natix_augment(img, 0, np.random.default_rng(0))
    assert hook(img, q0).tobytes() == jpeg_roundtrip(level0).tobytes()
    assert hook(img, q0).tobytes() != level0.tobytes()  # the JPEG step changed pixels


def test_evaluate_natix_reports_the_validator_figures_deterministically(tmp_path):
    import pandas as pd
    import torch
    from _training import make_roadwork

    from roadvision.evaluation import evaluate
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_roadwork(tmp_path / "data", n=24, size=32)
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    res = evaluate(tmp_path / "bundle", data, split=None, protocol="natix", natix_queries=12,
                   seed=1, out_dir=tmp_path / "a")
    again = evaluate(tmp_path / "bundle", data, split=None, protocol="natix", natix_queries=12,
                     seed=1, out_dir=tmp_path / "b")
    assert res["n"] == 12 and res["natix"]["queries"] == 12 and not res["natix"]["windows_full"]
    preds = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    assert preds["prob"].tolist() == pd.read_parquet(tmp_path / "b" / "predictions.parquet")[
        "prob"].tolist()
    assert res["natix"] == again["natix"]
    assert preds["natix_level"].tolist() == [natix_level(q, seed=1) for q in range(12)]
    assert res["natix"] == natix_scores(preds["label"].to_numpy(), preds["prob"].to_numpy())
    assert {"reward", "mcc_100", "accuracy_10", "mcc@0.5", "reward_last"} <= set(res["natix"])
