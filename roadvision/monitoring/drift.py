"""Two-sample tests: is logged traffic drawn from the training reference's distribution?

* **Input drift** (the decision): the maximum mean discrepancy (Gretton et al., JMLR 2012)
  between encoder embeddings, Gaussian kernel at the median pairwise distance, with a
  permutation p-value. Written here in numpy (about 40 lines) rather than taken from Alibi
  Detect, whose 0.13 release pins numpy<2, Pillow<11 and transformers<5 and pulls opencv-python
  beside our headless build, or Evidently, whose 0.7 release brings a web stack (litestar,
  plotly, statsmodels, nltk) for a test we need one function of.
* **Image statistics** and **prediction drift** (explanations beside the decision): brightness,
  contrast and colourfulness, and the score distribution, by a two-sample Kolmogorov-Smirnov
  statistic with a permutation p-value; the positive rate by a two-proportion z-test; lanes
  class shares by their mean change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["TestResult", "DriftResult", "mmd_test", "ks_test", "proportion_test",
           "compare", "DEFAULT_ALPHA", "DEFAULT_PERMUTATIONS"]

DEFAULT_ALPHA = 0.05
DEFAULT_PERMUTATIONS = 500


@dataclass
class TestResult:
    """One test: its statistic, p-value, and whether it is past ``alpha``."""

    name: str
    statistic: float
    p_value: float
    drifted: bool
    reference: float | None = None  # a summary of each side (mean, rate) for the report
    current: float | None = None


@dataclass
class DriftResult:
    """All tests of one comparison; ``drifted`` is the input-drift (MMD) decision."""

    drifted: bool
    alpha: float
    n_reference: int
    n_current: int
    input: TestResult | None
    image: list[TestResult] = field(default_factory=list)
    prediction: list[TestResult] = field(default_factory=list)
    class_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tests(self) -> list[TestResult]:
        return ([self.input] if self.input else []) + self.image + self.prediction

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- MMD -------------------------------------------------------------------------------------
def _sq_distances(z: np.ndarray) -> np.ndarray:
    norms = (z * z).sum(1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * z @ z.T, 0.0)


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS,
             alpha: float = DEFAULT_ALPHA, seed: int = 0) -> TestResult:
    """Biased MMD^2 between samples ``x`` [n, F] and ``y`` [m, F], permutation p-value.

    Features are standardised by the pooled sample's per-feature scale first (embedding
    features differ in scale by orders of magnitude). Scale and kernel bandwidth come from the
    pooled sample, never from one side: a statistic that depended on which rows are labelled
    reference would not be exchangeable under permutation, and the p-value would be wrong
    (with one side's scale, sparse ReLU features that are all zero in the reference turn every
    check into an alarm). The kernel matrix of the pooled sample is computed once; each
    permutation is a signed weight vector, so all of them cost one matrix product.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples a side, got {n} and {m}")
    z = np.concatenate([x, y])
    scale = z.std(0)
    scale[scale == 0] = 1.0
    z = (z - z.mean(0)) / scale
    d2 = _sq_distances(z)
    bandwidth = float(np.median(d2[np.triu_indices(n + m, 1)])) or 1.0
    kernel = np.exp(-d2 / bandwidth)
    rng = np.random.default_rng(seed)
    signs = np.empty((permutations + 1, n + m))
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    signs[0] = base
    for k in range(1, permutations + 1):
        signs[k] = base[rng.permutation(n + m)]
    stats = ((signs @ kernel) * signs).sum(1)
    observed = float(stats[0])
    # The observed split counts as one of the permutations: p is never 0 (Phipson & Smyth 2010).
    p = float((np.sum(stats[1:] >= observed) + 1) / (permutations + 1))
    return TestResult("embedding_mmd", observed, p, p < alpha)


# -- univariate ------------------------------------------------------------------------------
def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    values = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_test(name: str, a: np.ndarray, b: np.ndarray, *, permutations: int = 200,
            alpha: float = DEFAULT_ALPHA, seed: int = 0) -> TestResult:
    """Two-sample Kolmogorov-Smirnov statistic with a permutation p-value (exact for ties)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    observed = _ks_statistic(a, b)
    pooled, rng, hits = np.concatenate([a, b]), np.random.default_rng(seed), 0
    for _ in range(permutations):
        perm = rng.permutation(pooled)
        hits += _ks_statistic(perm[:len(a)], perm[len(a):]) >= observed
    p = (hits + 1) / (permutations + 1)
    return TestResult(name, observed, p, p < alpha, float(a.mean()), float(b.mean()))


def proportion_test(name: str, a: np.ndarray, b: np.ndarray, *,
                    alpha: float = DEFAULT_ALPHA) -> TestResult:
    """Two-proportion z-test (pooled variance, two-sided) on 0/1 arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pa, pb = float(a.mean()), float(b.mean())
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    z = 0.0 if se == 0 else (pb - pa) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    return TestResult(name, z, p, p < alpha, pa, pb)


# -- one comparison --------------------------------------------------------------------------
def compare(reference: dict[str, Any], current: dict[str, Any], *, alpha: float = DEFAULT_ALPHA,
            permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> DriftResult:
    """Compare two feature sets (as ``reference.Features`` holds them: ``embeddings``,
    ``stats`` [N, 3], ``probability``, ``label``, ``class_shares`` {class: [N]}); a missing
    part of ``current`` (images not logged) skips the tests that need it, with a note."""
    from .features import IMAGE_STATS

    notes: list[str] = []
    n_ref = len(reference["probability"]) if reference.get("probability") is not None else 0
    n_cur = _length(current)
    result = DriftResult(False, alpha, n_ref, n_cur, None, notes=notes)
    if current.get("embeddings") is not None and len(current["embeddings"]) >= 2:
        result.input = mmd_test(reference["embeddings"], current["embeddings"],
                                permutations=permutations, alpha=alpha, seed=seed)
        result.drifted = result.input.drifted
        result.image = [ks_test(name, reference["stats"][:, i], current["stats"][:, i],
                                alpha=alpha, seed=seed)
                        for i, name in enumerate(IMAGE_STATS)]
    else:
        notes.append("no logged images (the server logs hashes only, or no rows): input drift "
                      "and image statistics skipped; log images with --payload_log_fields "
                      "image,metadata,prediction")
    if current.get("probability") is not None and reference.get("probability") is not None:
        result.prediction = [
            ks_test("score", reference["probability"], current["probability"], alpha=alpha,
                    seed=seed),
            proportion_test("positive_rate", reference["label"], current["label"], alpha=alpha),
        ]
    if current.get("class_shares") and reference.get("class_shares"):
        result.class_shares = {
            name: {"reference": float(np.mean(reference["class_shares"][name])),
                   "current": float(np.mean(values))}
            for name, values in current["class_shares"].items()
            if name in reference["class_shares"]}
    return result


def _length(features: dict[str, Any]) -> int:
    for key in ("embeddings", "probability"):
        if features.get(key) is not None:
            return len(features[key])
    shares = features.get("class_shares") or {}
    return len(next(iter(shares.values()))) if shares else 0
