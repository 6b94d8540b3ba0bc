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

Lanes: a temperature only (multi-class NLL over a pixel subsample); no bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from roadvision.errors import UserError
from roadvision.metrics import ece, mcc

__all__ = ["fit_temperature", "fit_threshold", "fit_binary_calibration",
           "fit_multiclass_temperature", "calibrate"]


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
        return 1.0
    return float(np.clip(t, 0.05, 100.0))


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
                           fit_bias: bool = True) -> dict[str, float]:
    """``{"temperature", "logit_bias", "threshold_logit"}`` for the bundle's formula."""
    t_star = fit_threshold(logits, labels) if fit_bias else 0.0
    temperature = fit_temperature(logits, labels, offset=t_star)
    return {"temperature": temperature, "logit_bias": -t_star / temperature,
            "threshold_logit": t_star}


def fit_multiclass_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising cross-entropy of softmax(logits / T); logits [N, C], labels [N]."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return _lbfgs_log_t(lambda t: torch.nn.functional.cross_entropy(z / t, y))


def _probs(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(logits) / temperature + bias)))


def calibrate(bundle_dir: str | Path, data_dir: str | Path, split: str = "val",
              batch_size: int = 32, fit_bias: bool = True, max_pixels: int = 200_000) -> dict:
    """Fit calibration on ``split`` of ``data_dir`` and write it into the bundle's config.json.

    Returns the fitted values and the split's ECE / MCC before and after.
    """
    from roadvision.models.bundle import load_bundle, update_bundle_config
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import LOGITS, predict_dataset
    from roadvision.runtime.readers import load_rows

    if split == "test":
        raise UserError("calibration is fitted on validation data, never on the test split")
    model = load_bundle(bundle_dir)
    rows = load_rows(data_dir, [split])
    ds = ManifestDataset(data_dir, rows, model.cfg)
    if model.cfg.task == "roadwork":
        res = list(predict_dataset(model, ds, batch_size=batch_size, mode=LOGITS))
        z = np.array([r["logit"] for r in res])
        y = np.array([r["label"] for r in res])
        fitted = fit_binary_calibration(z, y, fit_bias=fit_bias)
        before = _probs(z, model.cfg.temperature, model.cfg.logit_bias)
        after = _probs(z, fitted["temperature"], fitted["logit_bias"])
        report: dict[str, Any] = {
            **fitted, "split": split, "n": len(y),
            "ece_before": ece(y, before), "ece_after": ece(y, after),
            "mcc_before": mcc(y, before >= 0.5), "mcc_after": mcc(y, after >= 0.5),
        }
        changes = {"temperature": fitted["temperature"], "logit_bias": fitted["logit_bias"]}
    else:
        report, changes = _calibrate_lanes(model, ds, batch_size, max_pixels, split)
    update_bundle_config(bundle_dir, extra={"calibration": report}, **changes)
    return report


def _calibrate_lanes(model, ds, batch_size, max_pixels, split) -> tuple[dict, dict]:
    from roadvision.runtime.inference import LOGITS, predict_dataset

    rng = np.random.default_rng(0)
    zs, ys = [], []
    per_image = max(1, max_pixels // max(len(ds), 1))
    for res in predict_dataset(model, ds, batch_size=batch_size, mode=LOGITS):
        logits = res["logits"]  # [C, H, W] at the tile size
        flat = logits.reshape(logits.shape[0], -1).T
        lab = res["mask"].reshape(-1)
        # keep every lane pixel and a sample of background: background would swamp the fit
        lane = np.flatnonzero(lab > 0)
        bg = np.flatnonzero(lab == 0)
        take = min(len(bg), per_image)
        idx = np.concatenate([lane, rng.choice(bg, take, replace=False) if take else bg[:0]])
        zs.append(flat[idx])
        ys.append(lab[idx])
    z, y = np.concatenate(zs), np.concatenate(ys)
    t = fit_multiclass_temperature(z, y)
    report = {"temperature": t, "split": split, "n_pixels": int(len(y))}
    return report, {"temperature": t}
