"""Metrics checked against values worked out by hand (and against scikit-learn where it agrees)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roadvision import metrics as M


def test_mcc_hand_computed():
    # tp=3, tn=2, fp=1, fn=2 -> (3*2 - 1*2) / sqrt(4*5*3*4) = 4 / sqrt(240)
    y_true = [1, 1, 1, 1, 1, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 1, 0, 0]
    assert M.binary_confusion(y_true, y_pred).tolist() == [[2, 1], [2, 3]]
    assert M.mcc(y_true, y_pred) == pytest.approx(4 / math.sqrt(240))


def test_mcc_extremes_and_degenerate():
    y = [0, 1, 0, 1, 1]
    assert M.mcc(y, y) == pytest.approx(1.0)
    assert M.mcc(y, [1 - v for v in y]) == pytest.approx(-1.0)
    # constant prediction: undefined -> 0, never a flattering value
    assert M.mcc(y, [1] * 5) == 0.0
    assert M.mcc(y, [0] * 5) == 0.0


def test_mcc_agrees_with_sklearn():
    from sklearn.metrics import matthews_corrcoef

    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, t, 1 - t)
    assert M.mcc(t, p) == pytest.approx(matthews_corrcoef(t, p))


def test_binary_labels_are_checked():
    with pytest.raises(ValueError, match="0 or 1"):
        M.mcc([0, 2], [0, 1])


def test_auroc_hand_computed_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.1 -> pairs:
    # (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=.5, (0.4>0.1)=1
    assert M.auroc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert M.auroc([1, 1], [0.2, 0.3]) is None


def test_ece_hand_computed():
    # two predictions at confidence 0.9 (one right), two at 0.6 (both right), 15 bins
    probs = [0.9, 0.9, 0.4, 0.4]
    labels = [1, 0, 0, 0]
    expected = (2 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.6)) / 4
    assert M.ece(labels, probs) == pytest.approx(expected)
    # perfectly calibrated in one bin: accuracy 0.75 at confidence 0.75
    assert M.ece([1, 1, 1, 0], [0.75] * 4) == pytest.approx(0.0)


def test_classification_metrics_keys_and_values():
    out = M.classification_metrics([1, 1, 0, 0], [0.9, 0.3, 0.6, 0.1])
    assert out["confusion_matrix"] == [[1, 1], [1, 1]]
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(0.5)
    assert out["mcc"] == pytest.approx(0.0)
    assert out["auroc"] == pytest.approx(0.75)
    assert out["n"] == 4


def test_iou_of_shifted_two_pixel_line_is_one_third():
    true = np.zeros((8, 10), np.uint8)
    pred = np.zeros((8, 10), np.uint8)
    true[:, 4:6] = 1  # a 2 px wide line
    pred[:, 5:7] = 1  # the same line shifted by 1 px
    cm = M.seg_confusion(true, pred, 4)
    ious = M.iou_per_class(cm)
    assert ious[1] == pytest.approx(1 / 3)
    assert ious[2] is None and ious[3] is None  # absent classes are undefined, not 0 or 1
    seg = M.segmentation_metrics(cm, ["bg", "a", "b", "c"])
    assert seg["miou_no_bg"] == pytest.approx(1 / 3)
    # background IoU = 56 / 72 (7 of 9 columns), so the background-inclusive mean looks much better
    assert seg["per_class_iou"]["bg"] == pytest.approx(56 / 72)
    assert seg["miou"] == pytest.approx((56 / 72 + 1 / 3) / 2)
    assert M.image_lane_iou(true, pred, 4) == pytest.approx(1 / 3)


def test_seg_confusion_sums_and_ignore_index():
    t = np.array([[0, 1], [2, 255]])
    p = np.array([[0, 2], [2, 0]])
    cm = M.seg_confusion(t, p, 3)
    assert cm.sum() == 3  # the ignored pixel is not counted
    assert cm[1, 2] == 1 and cm[2, 2] == 1 and cm[0, 0] == 1
    with pytest.raises(ValueError, match="class id"):
        M.seg_confusion(np.array([5]), np.array([0]), 3)


def test_reliability_bins_count_everything():
    rng = np.random.default_rng(1)
    p = rng.random(100)
    bins = M.reliability_bins(rng.integers(0, 2, 100), p, n_bins=10)
    assert sum(b["n"] for b in bins) == 100
    # top-label confidence is >= 0.5, so the lower half of the bins stays empty
    assert all(b["n"] == 0 for b in bins[:5])
