"""Lane decision biases fitted for lines (roadvision.evaluation.line_biases)."""

import numpy as np

from roadvision.evaluation.calibration import BIAS_GRID, BIAS_MIN_GAIN
from roadvision.evaluation.line_biases import fit_line_biases, skeleton_counts, skeleton_f1


def _line(size: int = 64, col: int = 30, width: int = 3, cls: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:60, col:col + width] = cls
    return mask


def test_skeleton_f1_is_one_for_the_truth_and_zero_for_a_line_beyond_the_tolerance():
    truth = _line()
    assert skeleton_f1(skeleton_counts(truth, truth, [1], tol_px=2))[0] == 1.0
    near = skeleton_f1(skeleton_counts(_line(col=32), truth, [1], tol_px=3))[0]
    far = skeleton_f1(skeleton_counts(_line(col=45), truth, [1], tol_px=3))[0]
    assert near == 1.0 and far == 0.0
    # half the line predicted: every predicted pixel is precise, half the truth is found
    half = truth.copy()
    half[32:] = 0
    precision_recall = skeleton_counts(half, truth, [1], tol_px=2)[0]
    assert precision_recall[0] == precision_recall[1]  # precise
    assert 0.4 < precision_recall[2] / precision_recall[3] < 0.6
    assert np.isnan(skeleton_f1(skeleton_counts(truth, np.zeros_like(truth), [1], 2))[0])


def test_a_line_whose_scores_sit_just_below_background_gets_a_positive_bias():
    rng = np.random.default_rng(0)
    logits, masks = [], []
    for _ in range(6):
        mask = _line(col=int(rng.integers(8, 50)))
        z = np.zeros((2, 64, 64), np.float32)
        z[0] = 1.0  # background wins by 1.0 everywhere ...
        z[1] = np.where(mask == 1, 0.6, -3.0)  # ... even on the line, by 0.4
        logits.append(z)
        masks.append(mask)
    bias, before, after = fit_line_biases(logits, masks, 1.0, 2.0, BIAS_GRID, BIAS_MIN_GAIN)
    assert before == [0.0]  # plain argmax finds no line at all
    assert 0.4 < bias[1] < 4.0 and after[0] == 1.0
    assert bias[0] == 0.0


def test_an_already_right_argmax_keeps_zero_biases():
    mask = _line()
    z = np.stack([np.where(mask == 0, 2.0, -2.0), np.where(mask == 1, 2.0, -2.0)]).astype(
        np.float32)
    bias, before, after = fit_line_biases([z], [mask], 1.0, 2.0, BIAS_GRID, BIAS_MIN_GAIN)
    assert bias == [0.0, 0.0] and before == after == [1.0]
