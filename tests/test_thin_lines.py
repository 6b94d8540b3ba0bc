"""Thin lines (issue 13 item 6): per-class decision biases fitted on validation, short-piece
removal in the one inference path and in the vectors, the clDice option of the training config."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from _training import make_lanes
from shapely import LineString

from roadvision.errors import UserError
from roadvision.evaluation.calibration import (
    CalibrationWarning,
    calibrate_on,
    fit_class_biases,
    weighted_lane_ious,
)
from roadvision.geo.lines import JoinRule, drop_short, join_pieces
from roadvision.models import create_model
from roadvision.models.bundle import load_bundle, save_bundle, update_bundle_config
from roadvision.models.config import ModelConfig
from roadvision.runtime.dataset import ManifestDataset
from roadvision.runtime.inference import (
    drop_short_segments,
    lane_mask,
    predict,
    predict_dataset,
    predict_proba,
)
from roadvision.runtime.readers import load_rows
from roadvision.training import TrainConfig, train

CFG = ModelConfig(task="lanes")


def _line_and_specks() -> np.ndarray:
    mask = np.zeros((64, 96), np.uint8)
    mask[30:32, 4:90] = 1  # a line 8.6 m long at 10 cm/px
    mask[10, 20] = 1  # one-pixel speck
    mask[50:52, 60:63] = 3  # a 3x2 fleck of another class
    mask[12:15, 70:72] = 2  # 0.36 m of dashed-class paint
    mask[0:2, 40] = 2  # short, but cut by the tile's edge: it may go on outside
    return mask


# --- short-piece removal ----------------------------------------------------------------

def test_specks_go_and_the_line_stays():
    mask = _line_and_specks()
    out = drop_short_segments(mask, min_pixels=15)  # 1.5 m at 10 cm/px
    assert (out == 1).sum() == (mask[30:32] == 1).sum()  # the line, every pixel of it
    assert out[10, 20] == 0 and not (out == 3).any() and not out[12:15, 70:72].any()
    assert (out[0:2, 40] == 2).all()  # edge pieces are kept
    assert (mask == _line_and_specks()).all()  # the input is not changed


def test_lane_mask_without_settings_is_the_plain_argmax():
    torch.manual_seed(0)
    probs = torch.rand(4, 20, 30).softmax(0)
    assert (lane_mask(probs, CFG, 0.1) == probs.argmax(0).numpy()).all()


def test_lane_mask_applies_bias_and_min_segment_in_metres():
    probs = torch.zeros(4, 64, 96)
    probs[0] = 0.6
    probs[1] = 0.4  # everywhere: argmax says background
    assert not lane_mask(probs, CFG, 0.1).any()
    biased = CFG.replace(class_bias=[0.0, 0.5, 0.0, 0.0])  # log 0.4 + 0.5 > log 0.6
    assert (lane_mask(probs, biased, 0.1) == 1).all()
    onehot = torch.nn.functional.one_hot(torch.from_numpy(_line_and_specks()).long(), 4)
    probs = onehot.permute(2, 0, 1).float()
    short = CFG.replace(min_segment_m=1.5)
    assert lane_mask(probs, short, 0.1)[10, 20] == 0  # 0.14 m at 10 cm/px: a speck
    # at 1 m/px the same speck is 1.4 m long: under 1.5 m still, the 3x2 fleck is not
    coarse = lane_mask(probs, short, 1.0)
    assert coarse[10, 20] == 0 and (coarse[50:52, 60:63] == 3).all()
    with pytest.raises(UserError, match="class_bias"):
        CFG.replace(class_bias=[0.0, 1.0])
    with pytest.raises(UserError, match="min_segment_m"):
        CFG.replace(min_segment_m=-1.0)


# --- per-class biases -------------------------------------------------------------------

def test_fit_class_biases_recovers_an_under_predicted_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 4000)
    logits = rng.normal(0, 1, (4000, 4)).astype(np.float32)
    logits[np.arange(4000), labels] += 3.0
    weights = np.ones(4000)
    assert fit_class_biases(logits, labels, weights) == [0.0] * 4  # argmax is already best
    shy = logits.copy()
    shy[:, 2] -= 2.5  # class 2 under-predicted: its pixels go to the others
    bias = fit_class_biases(shy, labels, weights)
    assert bias[0] == 0.0 and bias[2] >= 1.5
    before = weighted_lane_ious(shy.argmax(1), labels, weights, 4)
    after = weighted_lane_ious((shy + np.array(bias, np.float32)).argmax(1), labels, weights, 4)
    assert after[1] > before[1] + 0.2  # class 2's IoU (index 1: lane classes from 1)
    # the temperature divides the logits before the biases
    assert fit_class_biases(2.0 * shy, labels, weights, temperature=2.0) == bias


def _bundle(tmp_path, name="bundle"):
    torch.manual_seed(0)
    return save_bundle(create_model("lanes_tiny"), tmp_path / name, extra={"gsd_m": 0.1})


def test_biases_fitted_stored_and_used_by_every_path(tmp_path):
    data = make_lanes(tmp_path / "data", n=44, size=32)
    ds_rows = load_rows(data, None)
    bundle = _bundle(tmp_path)
    model = load_bundle(bundle)
    report = calibrate_on(bundle, [(model, ManifestDataset(data, ds_rows, model.cfg))], "val",
                          max_pixels=20_000)
    bias = report["class_bias"]
    assert len(bias) == 4 and bias[0] == 0.0 and report["n"] == 44
    assert np.nanmean(np.array(report["lane_iou_after"], float)) >= \
        np.nanmean(np.array(report["lane_iou_before"], float))
    stored = json.loads((bundle / "config.json").read_text())
    assert stored["model_config"]["class_bias"] == bias
    fitted = load_bundle(bundle)
    ds = ManifestDataset(data, ds_rows, fitted.cfg)
    evaluated = [r["pred"] for r in predict_dataset(fitted, ds, batch_size=16, mode="none")]
    samples = [{k: v for k, v in ds[i].items() if k != "mask"} for i in range(len(ds))]
    probs = predict_proba(fitted, samples, batch_size=16)
    served = predict(fitted, samples[:1])[0]
    assert all((e == lane_mask(p, fitted.cfg, 0.1)).all() for e, p in zip(evaluated, probs,
                                                                            strict=True))
    assert (served["mask"] == evaluated[0]).all()
    if any(bias):  # the biases changed something: the plain argmax differs somewhere
        assert any((e != p.argmax(0).numpy()).any() for e, p in zip(evaluated, probs,
                                                                     strict=True))
    # min_segment_m is a bundle setting too
    update_bundle_config(bundle, min_segment_m=1.5)
    assert load_bundle(bundle).cfg.min_segment_m == 1.5


def test_too_small_val_warns_and_keeps_the_argmax(tmp_path):
    data = make_lanes(tmp_path / "data", n=12, size=32)
    bundle = _bundle(tmp_path)
    update_bundle_config(bundle, class_bias=[0.0, 1.0, 1.0, 1.0])
    model = load_bundle(bundle)
    ds = ManifestDataset(data, load_rows(data, None), model.cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = calibrate_on(bundle, [(model, ds)], "val")
    assert any(issubclass(w.category, CalibrationWarning) for w in caught)
    assert report["class_bias"] == [] and "fewer than" in report["warning"]
    assert load_bundle(bundle).cfg.class_bias == []


# --- vectors ----------------------------------------------------------------------------

def test_vectors_drop_short_isolated_lines_but_keep_dashes():
    long_line = LineString([(0, 0), (20, 0)])
    speck = LineString([(5, 8), (5.6, 8)])  # 0.6 m, alone
    dashes = [LineString([(x, 20), (x + 1.0, 20)]) for x in (0.0, 4.0, 8.0)]  # 1 m each
    rule = JoinRule(max_gap=4.0, min_length=1.5)
    chains = join_pieces([long_line, speck, *dashes], rule)
    kept = sorted(tuple(c.pieces) for c in chains)
    assert kept == [(0,), (2, 3, 4)]
    # min_length 0 (the default) keeps everything, as before
    assert len(join_pieces([long_line, speck, *dashes], JoinRule(max_gap=4.0))) == 3
    assert drop_short([], 1.5) == []


# --- training option --------------------------------------------------------------------

def test_lane_loss_option_is_validated_and_reaches_the_bundle(tmp_path):
    with pytest.raises(UserError, match="lane_loss"):
        TrainConfig(lane_loss="cldice_only")
    with pytest.raises(UserError, match="cldice_weight"):
        TrainConfig(cldice_weight=-0.1)
    cfg = TrainConfig.for_profile("tiny", "lanes", lane_loss="dice_focal_cldice",
                                  cldice_weight=0.3, epochs=1, max_steps_per_epoch=2)
    assert cfg.loss_options("lanes") == {"cldice": 0.3}
    assert cfg.loss_options("roadwork") == {}  # roadwork has no such term
    assert TrainConfig().loss_options("lanes") == {}
    data = make_lanes(tmp_path / "data", n=10, size=32)
    result = train(data, tmp_path / "run", cfg)
    stored = json.loads((result.bundle_dir / "config.json").read_text())
    assert stored["extra"]["train_config"]["lane_loss"] == "dice_focal_cldice"
    assert stored["extra"]["train_config"]["cldice_weight"] == 0.3
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(h["train_cldice"] > 0 for h in history)
