"""Calibration fitted on validation: a decision bias for MCC, a temperature for ECE.

The bundle applies ``p = sigmoid(logit / T + b)`` (``roadvision.models.calibration``) and
decides at the fixed threshold 0.5, i.e. ``logit >= -b T``. The two parameters answer two
different questions, so they are fitted in an order that keeps them from fighting:

1. the *decision threshold* on the raw logit, ``t*``: grid search over every midpoint between
   sorted validation logits, maximising MCC at that threshold (ties: the one closest to 0, the
   untouched model). Temperature scaling alone can never move MCC at 0.5 (DESIGN.md).
2. the *temperature* ``T``: minimise the validation NLL of ``sigmoid((logit - t*) / T)``
   (LBFGS over log T, so T stays positive). The decision boundary stays at ``t*``.
3. ``b = -t* / T``, so the bundle's formula reproduces both.

Lanes: a temperature (multi-class NLL over a pixel subsample), then per-class decision biases
(``fit_class_biases``, when ``fit_bias``): the mask is ``argmax(logit / T + b)`` with
background's bias 0, each lane class's bias searched on a grid, class by class, to maximise the
mean lane-class IoU of those pixels (background pixels weighted back to their true share). On
thin lines argmax is rarely the IoU-best decision: a class whose scores sit just below
background's everywhere along a line loses the line. ``runtime.inference.lane_mask`` applies it.

Where the logits come from: the validation split (``calibrate``), or, better, out-of-fold
predictions over train+val (``calibrate_on`` with the fold models and their held-out folds,
``roadvision.components.train``): k times more images than val alone, none seen by the model
that scored it (DESIGN.md: k-fold CV on train+val replaces the seed's fine-tuning on test).

Too little data is not fitted. A set with fewer than ``MIN_SAMPLES`` images (or fewer than
``MIN_PER_CLASS`` of either label) gives a temperature and threshold that are noise: a
12-image val set used to pin the temperature at the bound 100 without a word. Then the fit
falls back to temperature 1 and no bias, warns in one line (``CalibrationWarning``) and says so
in the report's ``warning``. On enough data a temperature on its bound is kept (a model whose
logits carry no information there is best answered near 0.5), with a warning that says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roadvision.errors import UserError
from roadvision.metrics import LANE_BIAS_OBJECTIVES, ece, mcc

__all__ = ["fit_temperature", "fit_threshold", "fit_binary_calibration",
           "fit_multiclass_temperature", "fit_class_biases", "weighted_lane_ious", "calibrate",
           "calibrate_on", "calibration_problem", "CalibrationWarning", "MIN_SAMPLES",
           "MIN_PER_CLASS", "T_BOUNDS", "BIAS_GRID", "BIAS_MIN_GAIN", "ascend_biases"]

MIN_SAMPLES = 40  # images; below this the fitted values move more than they correct
MIN_PER_CLASS = 8  # roadwork: images of each label
T_BOUNDS = (0.05, 100.0)  # a fitted temperature on a bound is a sign of a degenerate fit


class CalibrationWarning(UserWarning):
    """Calibration fell back to the untouched model (too little data, or a degenerate fit)."""


def calibration_problem(labels: np.ndarray | None, n_images: int) -> str | None:
    """Why ``n_images`` images (roadwork: with ``labels``) are too few to fit on, or None."""
    if n_images < MIN_SAMPLES:
        return f"{n_images} images, fewer than {MIN_SAMPLES}"
    if labels is not None:
        positives = int(np.sum(labels))
        if min(positives, n_images - positives) < MIN_PER_CLASS:
            return (f"{positives} of {n_images} images with roadwork, fewer than "
                    f"{MIN_PER_CLASS} of one label")
    return None


def _warn(message: str) -> str:
    warnings.warn(message, CalibrationWarning, stacklevel=3)
    return message


def _bound_message(t: float, n_images: int) -> str:
    why = ("the logits separate them perfectly, so no finite temperature is best"
           if t <= T_BOUNDS[0] * 1.001 else
           "the logits carry almost no information there (or point the wrong way)")
    return (f"calibration: the temperature ran to its bound ({t:g}) on {n_images} images: "
            f"{why}; check the model and the data before trusting its probabilities")


def _on_bound(t: float) -> bool:
    return bool(np.isclose(t, T_BOUNDS[0]) or np.isclose(t, T_BOUNDS[1]))


def _lbfgs_log_t(nll) -> float:
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(log_t.exp())
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t):
        return T_BOUNDS[1]  # diverged: degenerate, as a bound is
    return float(np.clip(t, *T_BOUNDS))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, offset: float = 0.0) -> float:
    """T minimising the binary NLL of ``sigmoid((logits - offset) / T)``."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64) - offset)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    if z.numel() == 0:
        raise UserError("cannot fit a temperature on zero samples")
    return _lbfgs_log_t(
        lambda t: torch.nn.functional.binary_cross_entropy_with_logits(z / t, y))


def fit_threshold(logits: np.ndarray, labels: np.ndarray) -> float:
    """Raw-logit threshold maximising MCC (ties broken towards 0)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    uniq = np.unique(z)
    candidates = np.concatenate(([0.0], (uniq[:-1] + uniq[1:]) / 2.0,
                                 [uniq[0] - 1.0, uniq[-1] + 1.0]))
    # MCC for every candidate at once from cumulative counts (O(n log n), not O(n^2))
    order = np.argsort(z)
    zs, ys = z[order], y[order]
    pos_total, n = int(y.sum()), len(y)
    best_t, best_m = 0.0, -np.inf
    below = np.searchsorted(zs, candidates, side="left")  # predicted negative: z < t
    cum_pos = np.concatenate(([0], np.cumsum(ys)))
    for t, k in zip(candidates, below, strict=True):
        fn = float(cum_pos[k])
        tn = k - fn
        tp = pos_total - fn
        fp = (n - k) - tp
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        m = (tp * tn - fp * fn) / denom if denom else 0.0
        if m > best_m + 1e-12 or (abs(m - best_m) <= 1e-12 and abs(t) < abs(best_t)):
            best_t, best_m = float(t), float(m)
    return best_t


def fit_binary_calibration(logits: np.ndarray, labels: np.ndarray,
                           fit_bias: bool = True) -> dict[str, Any]:
    """``{"temperature", "logit_bias", "threshold_logit"}`` for the bundle's formula, plus
    ``warning`` (None, or the one line said when it fell back, see the module docstring)."""
    y = np.asarray(labels)
    problem = calibration_problem(y, len(y))
    if problem is not None:
        warning = _warn(f"calibration not fitted: {problem}; keeping temperature 1 and bias 0 "
                        "(use a larger validation split or out-of-fold predictions)")
        return {"temperature": 1.0, "logit_bias": 0.0, "threshold_logit": 0.0,
                "warning": warning}
    t_star = fit_threshold(logits, y) if fit_bias else 0.0
    temperature, warning = fit_temperature(logits, y, offset=t_star), None
    if _on_bound(temperature):
        warning = _warn(_bound_message(temperature, len(y)))
    return {"temperature": temperature, "logit_bias": -t_star / temperature,
            "threshold_logit": t_star, "warning": warning}


def fit_multiclass_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising cross-entropy of softmax(logits / T); logits [N, C], labels [N]."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return _lbfgs_log_t(lambda t: torch.nn.functional.cross_entropy(z / t, y))


BIAS_GRID = np.round(np.arange(-4.0, 4.0001, 0.25), 2)  # lanes class biases, log-prob units
#: A bias further from 0 must raise the mean lane IoU by this much to be taken: smaller gains
#: on the fitting pixels are noise, and a fit that moves nothing should leave the argmax alone.
BIAS_MIN_GAIN = 1e-3
LINE_TOLERANCE_M = 0.5  # the polyline F1's tighter buffer (roadvision.geo.metrics)


def weighted_lane_ious(pred: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                       num_classes: int) -> np.ndarray:
    """IoU of each lane class 1..C-1 from weighted pixels (NaN for a class neither true nor
    predicted anywhere)."""
    cm = np.bincount(np.asarray(labels) * num_classes + np.asarray(pred), weights=weights,
                     minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(cm)[1:]
    union = cm.sum(0)[1:] + cm.sum(1)[1:] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def fit_class_biases(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                     temperature: float = 1.0, rounds: int = 2) -> list[float]:
    """Per-class biases ``b`` (background's 0) for ``argmax(logits / T + b)`` maximising the
    mean lane-class IoU of weighted pixels (logits [N, C], labels [N], weights [N]).

    Coordinate ascent over the classes present in ``labels``, ``rounds`` passes over
    :data:`BIAS_GRID`; a bias further from 0 must gain :data:`BIAS_MIN_GAIN`, so an argmax
    that is already (nearly) best stays.
    """
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    y = np.asarray(labels, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    num_classes = z.shape[1]
    present = [c for c in range(1, num_classes) if np.any(y == c)]

    def score(b: np.ndarray) -> float:
        ious = weighted_lane_ious((z + b).argmax(1), y, w, num_classes)
        return float(np.nanmean(ious[[c - 1 for c in present]]))

    return ascend_biases(score, present, num_classes, BIAS_GRID, BIAS_MIN_GAIN, rounds)


def ascend_biases(score: Callable[[np.ndarray], float], classes: Sequence[int],
                  num_classes: int, grid: Sequence[float], min_gain: float,
                  rounds: int = 2) -> list[float]:
    """Per-class biases (0 for classes not in ``classes``) maximising ``score(bias)``:
    coordinate ascent, ``rounds`` passes over ``grid`` per class, nearest 0 first (it wins
    ties); a bias further from 0 must gain ``min_gain``, so a decision that is already
    (nearly) best stays. Shared by the IoU fit here and the lines fit (``line_biases``)."""
    bias = np.zeros(num_classes, dtype=np.float32)
    for _ in range(rounds):
        for c in classes:
            best_b, best_s = 0.0, -np.inf
            for value in sorted(grid, key=abs):
                trial = bias.copy()
                trial[c] = value
                s_trial = score(trial)
                if s_trial > best_s + (min_gain if np.isfinite(best_s) else 0.0):
                    best_b, best_s = float(value), s_trial
            bias[c] = best_b
    return [float(b) for b in bias]


def _probs(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(logits) / temperature + bias)))


def calibrate(bundle_dir: str | Path, data_dir: str | Path, split: str = "val",
              batch_size: int = 32, fit_bias: bool = True, max_pixels: int = 200_000,
              objective: str = "iou") -> dict:
    """Fit calibration on ``split`` of ``data_dir`` and write it into the bundle's config.json.
    ``objective`` (lanes): what the class biases maximise, ``"iou"`` (the mask) or ``"lines"``
    (the skeleton F1 at 0.5 m, ``line_biases``: for a model whose output is traced to vectors).

    Returns the fitted values and the split's ECE / MCC before and after (and ``warning``
    when the split was too small or the fit degenerate: then temperature 1 is kept).
    """
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import load_for_inference
    from roadvision.runtime.readers import load_rows

    if split == "test":
        raise UserError("calibration is fitted on validation data, never on the test split")
    model = load_for_inference(bundle_dir)
    rows = load_rows(data_dir, [split])
    ds = ManifestDataset(data_dir, rows, model.cfg)
    return calibrate_on(bundle_dir, [(model, ds)], split, batch_size=batch_size,
                        fit_bias=fit_bias, max_pixels=max_pixels, objective=objective)


def calibrate_on(bundle_dir: str | Path, sources: Sequence[tuple[Any, Any]], source: str,
                 batch_size: int = 32, fit_bias: bool = True,
                 max_pixels: int = 200_000, objective: str = "iou") -> dict:
    """Fit on the raw logits each ``(model, dataset)`` pair gives (one pair: the bundle's model
    on val; k pairs: fold models on their held-out folds) and write the result into the
    bundle's config.json. ``source`` names the data in the report (``"val"``, ``"oof-5"``).

    ECE and MCC before/after are measured on those same logits (in-sample for val; for
    out-of-fold logits they are the fold models', not the bundle's).
    """
    from roadvision.models.bundle import load_bundle, update_bundle_config
    from roadvision.runtime.inference import LOGITS, predict_dataset

    cfg = load_bundle(bundle_dir).cfg
    if cfg.task == "roadwork":
        z_parts, y_parts = [], []
        for model, ds in sources:
            res = list(predict_dataset(model, ds, batch_size=batch_size, mode=LOGITS))
            z_parts.append(np.array([r["logit"] for r in res], dtype=np.float64))
            y_parts.append(np.array([r["label"] for r in res], dtype=np.int64))
        z, y = np.concatenate(z_parts), np.concatenate(y_parts)
        fitted = fit_binary_calibration(z, y, fit_bias=fit_bias)
        before = _probs(z, cfg.temperature, cfg.logit_bias)
        after = _probs(z, fitted["temperature"], fitted["logit_bias"])
        report: dict[str, Any] = {
            **fitted, "split": source, "n": len(y),
            "ece_before": ece(y, before), "ece_after": ece(y, after),
            "mcc_before": mcc(y, before >= 0.5), "mcc_after": mcc(y, after >= 0.5),
        }
        changes = {"temperature": fitted["temperature"], "logit_bias": fitted["logit_bias"]}
    else:
        if objective not in LANE_BIAS_OBJECTIVES:
            raise UserError(f"bias objective {objective!r}: expected one of "
                            f"{', '.join(LANE_BIAS_OBJECTIVES)}")
        report, changes = _calibrate_lanes(sources, batch_size, max_pixels, source, fit_bias)
        if fit_bias and objective == "lines" and not report.get("warning"):
            report, changes = _fit_line_biases(sources, batch_size, report, changes)
    update_bundle_config(bundle_dir, extra={"calibration": report}, **changes)
    return report


def _lane_pixels(model, ds, batch_size: int, per_image: int, rng) -> Any:
    from roadvision.runtime.inference import LOGITS, predict_dataset

    for res in predict_dataset(model, ds, batch_size=batch_size, mode=LOGITS):
        logits = res["logits"]  # [C, H, W] at the tile size
        flat = logits.reshape(logits.shape[0], -1).T
        lab = res["mask"].reshape(-1)
        # keep every lane pixel and a sample of background: background would swamp the fit
        lane = np.flatnonzero(lab > 0)
        bg = np.flatnonzero(lab == 0)
        take = min(len(bg), per_image)
        idx = np.concatenate([lane, rng.choice(bg, take, replace=False) if take else bg[:0]])
        # each sampled background pixel stands for len(bg) / take of them (IoU counts)
        weight = np.concatenate([np.ones(len(lane)), np.full(take, len(bg) / max(take, 1))])
        yield flat[idx], lab[idx], weight


def _calibrate_lanes(sources, batch_size, max_pixels, split, fit_bias=True
                     ) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    n_images = sum(len(ds) for _, ds in sources)
    per_image = max(1, max_pixels // max(n_images, 1))
    problem = calibration_problem(None, n_images)
    if problem is not None:
        warning = _warn(f"calibration not fitted: {problem}; keeping temperature 1 and no "
                        "class biases (use a larger validation split or out-of-fold "
                        "predictions)")
        return ({"temperature": 1.0, "class_bias": [], "split": split, "n": n_images,
                 "n_pixels": 0, "warning": warning}, {"temperature": 1.0, "class_bias": []})
    zs, ys, ws = [], [], []
    for model, ds in sources:
        for z_part, y_part, w_part in _lane_pixels(model, ds, batch_size, per_image, rng):
            zs.append(z_part)
            ys.append(y_part)
            ws.append(w_part)
    z, y, w = np.concatenate(zs), np.concatenate(ys), np.concatenate(ws)
    t, warning = fit_multiclass_temperature(z, y), None
    if _on_bound(t):
        warning = _warn(_bound_message(t, n_images))
    bias = fit_class_biases(z, y, w, t) if fit_bias else []
    num_classes = z.shape[1]
    before = weighted_lane_ious(z.argmax(1), y, w, num_classes)
    after = weighted_lane_ious((z / t + np.asarray(bias or 0.0)).argmax(1), y, w, num_classes)
    report = {"temperature": t, "class_bias": bias, "split": split, "n": n_images,
              "n_pixels": int(len(y)), "warning": warning,
              # in-sample on the fitting pixels: what the biases bought there, not a test score
              "lane_iou_before": [None if np.isnan(v) else float(v) for v in before],
              "lane_iou_after": [None if np.isnan(v) else float(v) for v in after]}
    return report, {"temperature": t, "class_bias": bias}


def _fit_line_biases(sources, batch_size: int, report: dict, changes: dict
                     ) -> tuple[dict, dict]:
    """Refit the class biases for lines (``line_biases``) on the full masks of ``sources``,
    at the temperature just fitted; the report keeps the IoU fit's figures beside."""
    from roadvision.runtime.inference import LOGITS, model_gsd_m, predict_dataset

    from .line_biases import fit_line_biases

    logits, masks, tol_px = [], [], None
    for model, ds in sources:
        tol_px = LINE_TOLERANCE_M / model_gsd_m(model)
        for res in predict_dataset(model, ds, batch_size=batch_size, mode=LOGITS):
            logits.append(res["logits"])
            masks.append(res["mask"])
    t = report["temperature"]
    bias, before, after = fit_line_biases(logits, masks, t, tol_px, BIAS_GRID, BIAS_MIN_GAIN)
    # the mask IoU these biases give, on every pixel of the same images (not a sample)
    labels = np.concatenate([m.reshape(-1) for m in masks])
    num_classes = logits[0].shape[0]

    def ious(b: Sequence[float]) -> list[float | None]:
        pred = np.concatenate([(z / t + np.asarray(b, np.float32)[:, None, None]).argmax(0)
                               .reshape(-1) for z in logits])
        values = weighted_lane_ious(pred, labels, np.ones(len(labels)), num_classes)
        return [None if np.isnan(v) else float(v) for v in values]

    report = {**report, "class_bias": bias, "bias_objective": "lines",
              "iou_class_bias": report["class_bias"], "line_tolerance_m": LINE_TOLERANCE_M,
              "line_f1_before": before, "line_f1_after": after,
              "lane_iou_before": ious([0.0] * num_classes), "lane_iou_after": ious(bias)}
    return report, {**changes, "class_bias": bias}

