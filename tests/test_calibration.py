"""Calibration: temperature fixes over-confidence, the bias moves the 0.5 decision for MCC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _training import make_roadwork

from roadvision.errors import UserError
from roadvision.evaluation import calibrate
from roadvision.evaluation.calibration import (
    T_BOUNDS,
    CalibrationWarning,
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


def test_tiny_val_set_warns_and_keeps_temperature_one(tmp_path):
    """12 val images: the raw fit runs to the bound (100) on this model's logits; calibration
    says so in one warning and keeps the untouched model instead."""
    from roadvision.models import create_model
    from roadvision.models.bundle import load_bundle, save_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import LOGITS, predict_dataset
    from roadvision.runtime.readers import load_rows

    data = make_roadwork(tmp_path / "data", n=24, size=32, splits=["train"] * 12 + ["val"] * 12)
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    model = load_bundle(tmp_path / "bundle")
    res = list(predict_dataset(model, ManifestDataset(data, load_rows(data, ["val"]), model.cfg),
                               mode=LOGITS))
    z, y = np.array([r["logit"] for r in res]), np.array([r["label"] for r in res])
    assert fit_temperature(z, y) == T_BOUNDS[1]  # what used to be written silently
    with pytest.warns(CalibrationWarning, match="12 images, fewer than 40") as caught:
        report = calibrate(tmp_path / "bundle", data, split="val")
    ours = [w for w in caught if issubclass(w.category, CalibrationWarning)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)  # one line
    assert report["temperature"] == 1.0 and report["logit_bias"] == 0.0
    assert report["warning"] and report["n"] == 12
    assert load_bundle(tmp_path / "bundle").cfg.temperature == 1.0


def test_one_sided_or_degenerate_fits_fall_back():
    rng = np.random.default_rng(3)
    labels = np.array([1] * 5 + [0] * 95)  # 100 images, only 5 with roadwork
    with pytest.warns(CalibrationWarning, match="fewer than 8 of one label"):
        assert fit_binary_calibration(rng.normal(size=100), labels)["temperature"] == 1.0
    # logits that point the wrong way on enough data: T = 100 is the honest answer (p ~ 0.5),
    # kept, but not silently
    labels = np.array([0, 1] * 40)
    logits = -(2 * labels - 1) * 3.0 + rng.normal(0, 0.1, 80)
    with pytest.warns(CalibrationWarning, match="bound"):
        fitted = fit_binary_calibration(logits, labels)
    assert fitted["temperature"] == T_BOUNDS[1] and "bound" in fitted["warning"]
    # a healthy fit says nothing
    import warnings

    big_logits, big_labels = _overconfident(n=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        assert fit_binary_calibration(big_logits, big_labels)["warning"] is None


def test_epoch_selection_is_threshold_free(tmp_path):
    """The selection figure (roadwork AUROC) does not move when every logit moves by +5,
    while MCC at 0.5 collapses: a threshold cannot pick the epoch."""
    from roadvision.models import create_model
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.readers import load_rows
    from roadvision.training.loop import validate

    data = make_roadwork(tmp_path / "data", n=40, size=32, splits=["val"] * 40)
    torch.manual_seed(0)
    model = create_model("roadwork_tiny").eval()
    ds = ManifestDataset(data, load_rows(data, ["val"]), model.cfg)
    before = validate(model, ds, batch_size=20)
    with torch.no_grad():
        model.head[-1].bias.add_(5.0)
    after = validate(model, ds, batch_size=20)
    assert before["headline"] == pytest.approx(before["auroc"])
    assert after["headline"] == pytest.approx(before["headline"], abs=1e-6)
    assert after["mcc"] == 0.0 and after["nll"] > before["nll"]


def test_lanes_selection_is_soft_iou():
    import tempfile
    from pathlib import Path

    from _training import make_lanes

    from roadvision.models import create_model
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.readers import load_rows
    from roadvision.training.loop import validate

    with tempfile.TemporaryDirectory() as tmp:
        data = make_lanes(Path(tmp) / "lanes", n=6, size=64)
        torch.manual_seed(0)
        model = create_model("lanes_tiny").eval()
        out = validate(model, ManifestDataset(data, load_rows(data, None), model.cfg), 3)
    assert out["headline"] == out["soft_iou_no_bg"]
    assert 0.0 < out["headline"] < 1.0  # soft: a random model is neither 0 nor 1


def test_out_of_fold_calibration_uses_all_of_train_and_val(tmp_path):
    """k-fold over train+val: every train+val image is scored once by a model that never saw
    it, whole cities per fold; 14 val images alone would be too few to fit on."""
    from roadvision.components.train import fold_ids, out_of_fold_sources
    from roadvision.evaluation.calibration import calibrate_on
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle
    from roadvision.runtime.readers import load_rows
    from roadvision.training import TrainConfig

    data = make_roadwork(tmp_path / "data", n=48, size=32,
                         splits=["train"] * 30 + ["val"] * 14 + ["test"] * 4)
    rows = load_rows(data, ["train", "val"])
    folds = fold_ids(rows, 2)
    assert set(folds) == {0, 1}
    assert rows.groupby("city").apply(lambda g: folds[g.index].tolist().count(
        folds[g.index][0]) == len(g)).all()  # a city lies in one fold
    cfg = TrainConfig.for_profile("tiny", "roadwork", max_steps_per_epoch=1)
    sources = out_of_fold_sources(data, cfg, 2, epochs=1, work=tmp_path / "folds")
    held_ids = [i for _, ds in sources for i in ds.rows["id"]]
    assert sorted(held_ids) == sorted(rows["id"]) and len(set(held_ids)) == 44
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = calibrate_on(tmp_path / "bundle", sources, "oof-2")
    assert not [w for w in caught if "not fitted" in str(w.message)]  # 44 images: enough
    assert report["n"] == 44 and report["split"] == "oof-2"
    with pytest.warns(CalibrationWarning, match="14 images"):
        calibrate(tmp_path / "bundle", data, split="val")
