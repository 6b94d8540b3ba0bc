"""Canary figures of a champion and a challenger serving side by side, and what to do next.

A predictor that serves a canary (``serving/canary.py``: the challenger answers a share of the
traffic, or shadows it) leaves its figures in two places, and either or both can be read:

* its ``/metrics`` text (:func:`figures_from_metrics`): requests by arm and outcome, latency
  histograms, roadwork score histograms and positive counts, and in shadow mode the server's
  own count of instances on which both arms agreed;
* the payload log (:func:`figures_from_log`, rows from ``records.read_logged``), whose rows name
  the ``arm`` that answered: latency, scores and, where both arms answered the same request
  (shadow mode), their agreement; in split mode no request has both answers, so the arms'
  positive rates are compared instead (a two-proportion z-test: what users see), and the
  drift of the challenger's scores from the champion's is reported beside it
  (Kolmogorov-Smirnov with a permutation p-value; not a verdict: a retrained model's scores
  always differ, given enough requests).

:func:`decide` turns the figures into ``promote``, ``rollback`` or ``wait`` by explicit
thresholds (:class:`Thresholds`), each check reported with its value and limit. Plain Python:
``roadvision model canary`` reads the sources and applies the decision through the registry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from roadvision.errors import UserError

__all__ = ["ARMS", "ArmFigures", "CanaryFigures", "Check", "Decision", "Thresholds",
           "answers_agree", "figures_from_metrics", "figures_from_log", "combine", "decide"]

CHAMPION_ARM, CHALLENGER_ARM = "champion", "challenger"
ARMS = (CHAMPION_ARM, CHALLENGER_ARM)
#: Two lanes answers agree when their class shares differ by at most this total variation.
LANES_AGREEMENT_TV = 0.05


def answers_agree(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two answers to one instance agree: the same roadwork label, or lanes class
    shares within :data:`LANES_AGREEMENT_TV` of each other (total variation distance)."""
    if a.get("label") is not None and b.get("label") is not None:
        return int(a["label"]) == int(b["label"])
    sa, sb = _shares(a.get("class_shares")), _shares(b.get("class_shares"))
    tv = 0.5 * sum(abs(sa.get(k, 0.0) - sb.get(k, 0.0)) for k in set(sa) | set(sb))
    return tv <= LANES_AGREEMENT_TV


def _shares(value: Any) -> dict[str, float]:
    if isinstance(value, str):
        value = json.loads(value) if value else {}
    return {str(k): float(v) for k, v in (value or {}).items()}


@dataclass
class ArmFigures:
    """What one arm did: requests by outcome, latency, and its roadwork scores."""

    requests: int = 0  # ok + rejected + errors
    ok: int = 0
    rejected: int = 0  # 4xx: the arm refused what it was sent
    errors: int = 0  # 5xx or past the deadline
    p50_ms: float | None = None
    p95_ms: float | None = None
    instances: int = 0  # scored instances (roadwork)
    positives: int = 0
    mean_score: float | None = None
    version: str | None = None  # bundle hash
    registry_version: str | None = None

    @property
    def failure_rate(self) -> float | None:
        """Share of requests not answered (rejected or failed); None before any request."""
        return (self.rejected + self.errors) / self.requests if self.requests else None

    @property
    def positive_rate(self) -> float | None:
        return self.positives / self.instances if self.instances else None


@dataclass
class CanaryFigures:
    """Both arms side by side, and how their predictions compare."""

    model: str  # the served name
    mode: str  # split | shadow | unknown
    percent: float | None
    champion: ArmFigures
    challenger: ArmFigures
    agreement: float | None = None  # share of paired instances on which both arms agreed
    agreement_n: int = 0
    agreement_source: str = ""
    positive_rate_p: float | None = None  # split: the arms' positive rates differ (low p)
    positive_rate_source: str = ""
    score_ks_p: float | None = None  # drift of the challenger's scores (payload log; a note)
    score_ks_statistic: float | None = None
    registry_name: str | None = None
    sources: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for arm in ARMS:
            figures = getattr(self, arm)
            out[arm].update(failure_rate=figures.failure_rate,
                            positive_rate=figures.positive_rate)
        return out

    def summary(self) -> str:
        """One line naming the figures (the audit entry's reason)."""
        c, h = self.champion, self.challenger

        def rate(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.1f}%"

        def ms(x: float | None) -> str:
            return "-" if x is None else f"{x:.0f}"

        parts = [f"{self.mode} {self.percent:g}%" if self.percent is not None else self.mode,
                 f"requests {c.requests}/{h.requests}",
                 f"failures {rate(c.failure_rate)}/{rate(h.failure_rate)}",
                 f"p50 {ms(c.p50_ms)}/{ms(h.p50_ms)} ms", f"p95 {ms(c.p95_ms)}/{ms(h.p95_ms)} ms"]
        if self.agreement is not None:
            parts.append(f"agreement {rate(self.agreement)} of {self.agreement_n}")
        elif self.positive_rate_p is not None:
            parts.append(f"positive rate {rate(c.positive_rate)}/{rate(h.positive_rate)} "
                         f"p={self.positive_rate_p:.3g}")
        if self.score_ks_p is not None:
            parts.append(f"score drift KS {self.score_ks_statistic:.2f} p={self.score_ks_p:.3g}")
        return "champion/challenger " + ", ".join(parts)


@dataclass(frozen=True)
class Thresholds:
    """When a challenger is promoted, rolled back, or given more time."""

    min_requests: int = 200  # requests the challenger must have handled before any verdict
    max_error_rate_increase: float = 0.01  # challenger failure rate - champion's, absolute
    max_latency_ratio: float = 1.5  # challenger p95 / champion p95
    min_agreement: float = 0.95  # paired answers that agree (shadow)
    score_alpha: float = 0.01  # split: the positive rates differ below this p-value

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise UserError(f"--min-requests must be >= 1, got {self.min_requests}")
        if not 0 <= self.max_error_rate_increase <= 1:
            raise UserError("--max-error-rate-increase must be in [0, 1], got "
                            f"{self.max_error_rate_increase}")
        if not self.max_latency_ratio > 0:
            raise UserError(f"--max-latency-ratio must be > 0, got {self.max_latency_ratio}")
        if not 0 <= self.min_agreement <= 1:
            raise UserError(f"--min-agreement must be in [0, 1], got {self.min_agreement}")
        if not 0 < self.score_alpha < 1:
            raise UserError(f"--score-alpha must be in (0, 1), got {self.score_alpha}")


@dataclass
class Check:
    name: str
    value: float | None
    limit: float
    passed: bool | None  # None: not measurable from these figures
    note: str = ""


@dataclass
class Decision:
    action: str  # promote | rollback | wait
    reason: str
    checks: list[Check]
    figures: CanaryFigures

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason,
                "checks": [asdict(c) for c in self.checks], "figures": self.figures.as_dict()}


# -- the decision ----------------------------------------------------------------------------
def decide(figures: CanaryFigures, thresholds: Thresholds = Thresholds()) -> Decision:
    """``promote`` when every measurable check passes, ``rollback`` when one fails, ``wait``
    while the challenger has handled fewer than ``min_requests`` requests."""
    t, c, h = thresholds, figures.champion, figures.challenger
    checks = [Check("challenger requests", float(h.requests), t.min_requests,
                    h.requests >= t.min_requests)]
    increase = (None if c.failure_rate is None or h.failure_rate is None
                else h.failure_rate - c.failure_rate)
    checks.append(Check("failure rate increase", increase, t.max_error_rate_increase,
                        None if increase is None else increase <= t.max_error_rate_increase))
    ratio = (h.p95_ms / c.p95_ms if h.p95_ms is not None and c.p95_ms else None)
    checks.append(Check("p95 latency ratio", ratio, t.max_latency_ratio,
                        None if ratio is None else ratio <= t.max_latency_ratio))
    if figures.agreement is not None:
        checks.append(Check("prediction agreement", figures.agreement, t.min_agreement,
                            figures.agreement >= t.min_agreement,
                            f"{figures.agreement_n} paired instances ({figures.agreement_source})"))
    elif figures.positive_rate_p is not None:
        checks.append(Check("positive rates alike (p-value)", figures.positive_rate_p,
                            t.score_alpha, figures.positive_rate_p >= t.score_alpha,
                            figures.positive_rate_source))
    else:
        checks.append(Check("prediction agreement", None, t.min_agreement, None,
                            "no paired answers and no scores to compare"))
    if not checks[0].passed:
        return Decision("wait", f"the challenger has handled {h.requests} of the "
                        f"{t.min_requests} requests needed", checks, figures)
    failed = [ch for ch in checks[1:] if ch.passed is False]
    if failed:
        return Decision("rollback", "; ".join(_failure(ch) for ch in failed), checks, figures)
    unmeasured = [ch.name for ch in checks[1:] if ch.passed is None]
    if "failure rate increase" in unmeasured:
        return Decision("wait", "no request counts for the champion", checks, figures)
    note = f" (not measurable: {', '.join(unmeasured)})" if unmeasured else ""
    return Decision("promote", f"every check passed{note}", checks, figures)


def _failure(check: Check) -> str:
    relation = ">" if check.name in ("failure rate increase", "p95 latency ratio") else "<"
    return f"{check.name} {check.value:.3g} {relation} {check.limit:g}"


# -- from the /metrics text ------------------------------------------------------------------
def figures_from_metrics(text: str, *, model: str | None = None,
                         registry_name: str | None = None) -> CanaryFigures:
    """The canary figures of served ``model`` (or the one whose arms come from
    ``registry_name``; or the only canary served) in a predictor's ``/metrics`` text."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as exc:  # the serve and monitor installs have it
        raise UserError("reading serving metrics needs prometheus-client (pip install "
                        "'roadvision[serve]')") from exc
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.name.startswith("roadvision_canary_")]
    arms = [s.labels for s in samples if s.name == "roadvision_canary_arm_info" and s.value]
    served = sorted({labels["model"] for labels in arms})
    if model is None:
        if registry_name is not None:
            served_for = sorted({a["model"] for a in arms if a.get("registry_name") ==
                                 registry_name}) or served
        else:
            served_for = served
        if len(served_for) != 1:
            raise UserError(f"the metrics hold canary arms for {served or 'no model'}: name the "
                            "served model (--served-name)" if served else
                            "the metrics hold no canary (roadvision_canary_arm_info): is this "
                            "predictor serving a challenger (--canary-percent or --shadow)?")
        model = served_for[0]
    elif model not in served:
        raise UserError(f"the metrics hold no canary arms for served model {model!r} "
                        f"(canaries there: {served or 'none'})")
    mine = [s for s in samples if s.labels.get("model") == model]
    figures = CanaryFigures(model=model, mode="unknown", percent=None, champion=ArmFigures(),
                            challenger=ArmFigures(), sources=["metrics"])
    for s in mine:
        arm = s.labels.get("arm")
        target = getattr(figures, arm) if arm in ARMS else None
        if s.name == "roadvision_canary_arm_info" and target is not None and s.value:
            target.version = s.labels.get("version") or None
            target.registry_version = s.labels.get("registry_version") or None
            figures.registry_name = s.labels.get("registry_name") or figures.registry_name
        elif s.name == "roadvision_canary_challenger_percent":
            figures.mode, figures.percent = s.labels.get("mode", "unknown"), s.value
        elif s.name == "roadvision_canary_requests_total" and target is not None:
            outcome = {"ok": "ok", "rejected": "rejected", "error": "errors"}.get(
                s.labels.get("outcome", ""))
            if outcome:
                setattr(target, outcome, getattr(target, outcome) + int(s.value))
                target.requests += int(s.value)
        elif s.name == "roadvision_canary_positive_instances_total" and target is not None:
            target.positives += int(s.value)
    for arm in ARMS:
        target = getattr(figures, arm)
        buckets = _buckets(mine, "roadvision_canary_latency_seconds", arm)
        target.p50_ms = _ms(_quantile(buckets, 0.50))
        target.p95_ms = _ms(_quantile(buckets, 0.95))
        target.instances = int(_value(mine, "roadvision_canary_score_count", arm))
        if target.instances:
            target.mean_score = _value(mine, "roadvision_canary_score_sum", arm) / target.instances
    pairs = {s.labels.get("result"): int(s.value) for s in mine
             if s.name == "roadvision_canary_agreement_total"}
    n = pairs.get("agree", 0) + pairs.get("disagree", 0)
    if n:
        figures.agreement, figures.agreement_n = pairs.get("agree", 0) / n, n
        figures.agreement_source = "server, shadow pairs"
    _positive_rate_test(figures, "metrics")
    return figures


def _positive_rate_test(figures: CanaryFigures, source: str) -> None:
    c, h = figures.champion, figures.challenger
    if c.instances and h.instances:
        figures.positive_rate_p = _two_proportion_p(c.positives, c.instances, h.positives,
                                                    h.instances)
        figures.positive_rate_source = f"two-proportion z-test ({source})"


def _value(samples: list, name: str, arm: str) -> float:
    return sum(s.value for s in samples if s.name == name and s.labels.get("arm") == arm)


def _buckets(samples: list, name: str, arm: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of one arm's histogram."""
    return sorted((float(s.labels["le"]), s.value) for s in samples
                  if s.name == f"{name}_bucket" and s.labels.get("arm") == arm)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """``histogram_quantile`` as PromQL computes it: linear within the bucket; the highest
    finite bound when the quantile falls in the +Inf bucket."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below)
                                              if count > below else 1.0)
        lower, below = upper, count
    return lower


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if x1 / n1 == x2 / n2 else 0.0
    return math.erfc(abs(x2 / n2 - x1 / n1) / se / math.sqrt(2))


# -- from the payload log --------------------------------------------------------------------
def figures_from_log(rows: Any, *, model: str | None = None) -> CanaryFigures:
    """The canary figures in logged payload rows (a DataFrame from ``records.read_logged``)
    that name their ``arm``. A UserError when none do (the log was written without a canary)."""
    from .drift import ks_test

    if "arm" not in rows.columns or rows["arm"].isna().all():
        raise UserError("the payload log has no rows that name an arm: it was written by a "
                        "predictor without a challenger")
    rows = rows[rows["arm"].isin(ARMS)]
    if model is not None:
        rows = rows[rows["model"] == model]
        if rows.empty:
            raise UserError(f"the payload log has no canary rows for served model {model!r}")
    served = sorted(rows["model"].unique())
    if len(served) != 1:
        raise UserError(f"the payload log holds canary rows for {served}: name the served model "
                        "(--served-name)")
    figures = CanaryFigures(model=served[0], mode="unknown", percent=None,
                            champion=ArmFigures(), challenger=ArmFigures(),
                            sources=["payload log"])
    scores: dict[str, np.ndarray] = {}
    for arm in ARMS:
        mine, target = rows[rows["arm"] == arm], getattr(figures, arm)
        requests = mine.drop_duplicates("request_id")
        target.requests = target.ok = len(requests)  # the log holds answers only
        if len(requests):
            latency = requests["latency_ms"].to_numpy(np.float64)
            target.p50_ms = float(np.percentile(latency, 50))
            target.p95_ms = float(np.percentile(latency, 95))
            target.version = str(requests["model_version"].iloc[-1])
            registry_version = requests["registry_version"].iloc[-1]
            target.registry_version = None if _missing(registry_version) else str(
                registry_version)
            if not _missing(requests["registry_name"].iloc[-1]):
                figures.registry_name = str(requests["registry_name"].iloc[-1])
        probability = mine["probability"].dropna().to_numpy(np.float64)
        scores[arm] = probability
        target.instances = len(probability)
        target.positives = int((mine["label"].dropna() == 1).sum())
        target.mean_score = float(probability.mean()) if len(probability) else None
    paired = rows.pivot_table(index=["request_id", "instance"], columns="arm", aggfunc="size")
    both = paired.dropna().index if set(ARMS) <= set(paired.columns) else []
    if len(both):
        figures.mode = "shadow"
        keyed = rows.set_index(["request_id", "instance", "arm"])
        agree = [answers_agree(_answer(keyed.loc[(r, i, CHAMPION_ARM)]),
                               _answer(keyed.loc[(r, i, CHALLENGER_ARM)])) for r, i in both]
        figures.agreement, figures.agreement_n = float(np.mean(agree)), len(agree)
        figures.agreement_source = "payload log, shadow pairs"
    else:
        figures.mode = "split"
    _positive_rate_test(figures, "payload log")
    if min(len(scores[CHAMPION_ARM]), len(scores[CHALLENGER_ARM])) >= 5:
        test = ks_test("score", scores[CHAMPION_ARM], scores[CHALLENGER_ARM], permutations=500)
        figures.score_ks_p, figures.score_ks_statistic = test.p_value, test.statistic
    return figures


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _answer(row: Any) -> dict[str, Any]:
    if hasattr(row, "iloc") and getattr(row, "ndim", 1) == 2:  # duplicated rows: the first
        row = row.iloc[0]
    label = row.get("label")
    return {"label": None if _missing(label) else int(label),
            "class_shares": row.get("class_shares") if isinstance(row.get("class_shares"), str)
            else None}


def combine(metrics: CanaryFigures | None, logged: CanaryFigures | None) -> CanaryFigures:
    """One set of figures from both sources: counts and latency from the metrics (every
    request, the log holds a sample), what the metrics lack (agreement in split mode, score
    distributions) from the log."""
    if metrics is None or logged is None:
        figures = metrics or logged
        if figures is None:
            raise UserError("no figures: pass --metrics-url and/or --logged")
        return figures
    out = metrics
    if logged.agreement is not None and out.agreement is None:
        out.agreement, out.agreement_n = logged.agreement, logged.agreement_n
        out.agreement_source = logged.agreement_source
    if logged.score_ks_p is not None:
        out.score_ks_p, out.score_ks_statistic = logged.score_ks_p, logged.score_ks_statistic
    for arm in ARMS:
        mine, theirs = getattr(out, arm), getattr(logged, arm)
        for f in fields(ArmFigures):
            if getattr(mine, f.name) in (None, 0) and getattr(theirs, f.name) not in (None, 0):
                setattr(mine, f.name, getattr(theirs, f.name))
    out.sources = metrics.sources + logged.sources
    return out
