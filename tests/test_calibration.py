"""Calibration: temperature fixes over-confidence, the bias moves the 0.5 decision for MCC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _training import make_roadwork

from roadvision.errors import UserError
from roadvision.evaluation import calibrate
from roadvision.evaluation.calibration import (
    fit_binary_calibration,
    fit_multiclass_temperature,
    fit_temperature,
    fit_threshold,
)
from roadvision.metrics import ece, mcc


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _overconfident(n=4000, scale=10.0, seed=0):
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < _sigmoid(true_logit)).astype(int)
    return true_logit * scale, labels


def test_temperature_recovers_the_scale_and_lowers_ece():
    logits, labels = _overconfident(scale=10.0)
    t = fit_temperature(logits, labels)
    assert 8.5 < t < 11.5
    before, after = ece(labels, _sigmoid(logits)), ece(labels, _sigmoid(logits / t))
    assert before > 0.1 and after < 0.03
    # temperature never changes the decision at 0.5
    assert mcc(labels, logits >= 0) == mcc(labels, logits / t >= 0)


def test_threshold_moves_the_decision_to_maximise_mcc():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 2000)
    labels = (a > 0).astype(int)
    logits = a + 1.5  # a biased model: the best raw threshold is 1.5, not 0
    t = fit_threshold(logits, labels)
    assert t == pytest.approx(1.5, abs=0.05)
    fitted = fit_binary_calibration(logits, labels)
    probs = _sigmoid(logits / fitted["temperature"] + fitted["logit_bias"])
    assert mcc(labels, probs >= 0.5) > mcc(labels, logits >= 0) + 0.3
    # ties go to the untouched model: perfectly separated at 0 keeps threshold 0
    assert fit_threshold(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1])) == 0.0


def test_multiclass_temperature():
    rng = np.random.default_rng(2)
    true = rng.normal(0, 1, (3000, 4))
    labels = np.array([rng.choice(4, p=np.exp(r) / np.exp(r).sum()) for r in true])
    t = fit_multiclass_temperature(true * 5.0, labels)
    assert 4.0 < t < 6.0


def test_calibrate_bundle_on_an_overconfident_model(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import load_bundle, save_bundle

    data = make_roadwork(tmp_path / "data", n=60, size=32,
                         splits=["train"] * 10 + ["val"] * 50)
    torch.manual_seed(0)
    model = create_model("roadwork_tiny")
    with torch.no_grad():  # a random model made very sure of itself
        model.head[-1].weight.mul_(200.0)
        model.head[-1].bias.fill_(3.0)
    save_bundle(model, tmp_path / "bundle")
    report = calibrate(tmp_path / "bundle", data, split="val")
    assert report["n"] == 50
    assert report["ece_before"] > 0.2
    assert report["ece_after"] < report["ece_before"] - 0.1
    assert report["mcc_after"] >= report["mcc_before"]
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.cfg.temperature == pytest.approx(report["temperature"])
    assert loaded.cfg.logit_bias == pytest.approx(report["logit_bias"])
    assert loaded.cfg.temperature > 1.0
    with pytest.raises(UserError, match="never on the test split"):
        calibrate(tmp_path / "bundle", data, split="test")
