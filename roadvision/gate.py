"""The promotion gate: may this challenger replace the champion?

Plain logic over two metric dicts (the output of ``roadvision.evaluation.evaluate`` for the
challenger and for the current champion, both on the same frozen test set), so it is tested
without MLflow or KFP. The rule:

- with a champion: the headline metric (roadwork MCC@0.5, lanes mIoU without background) must
  improve by at least ``min_delta``, and no slice (weather, daytime, scene, city value) may drop
  by more than ``slice_tolerance``. Slices smaller than ``min_slice_size`` on either side are
  reported but not judged: a 3-image slice moves by 0.3 on one image and would veto at random.
- without a champion (the first model): the headline must clear ``absolute_floor``.
- lanes: a slice carrying ``polyline_f1_1m`` (the mean length-weighted polyline F1 at 1 m over
  the lane classes, ``roadvision.evaluation.slices``) is judged on it too, with the same
  ``slice_tolerance`` and ``min_slice_size``, when the champion's slice has the figure; a
  champion evaluated before vector metrics existed lacks it, and those checks are reported
  as "not compared" rather than failed (``judge_polyline_f1=False`` turns them off).

The decision carries a one-line ``reason`` naming the metric or slice that decided it (it goes
into the model version's tags) and renders as a markdown and an HTML report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GateConfig", "Check", "GateDecision", "decide", "headline_of", "slice_scores",
           "POLYLINE_KEY"]

SLICE_FIELDS = ("weather", "daytime", "scene", "city")
# Keys a slice entry may use for its headline value, in order of preference.
_SLICE_VALUE_KEYS = ("headline", "mcc", "miou_no_bg", "miou_without_background", "miou", "value")
_SLICE_COUNT_KEYS = ("n", "count", "num_samples", "support", "size")
#: A lanes slice's polyline figure the gate judges beside its IoU (evaluation/slices.py).
POLYLINE_KEY = "polyline_f1_1m"


@dataclass
class GateConfig:
    """Gate tolerances (pipeline parameters of the same names)."""

    min_delta: float = 0.01  # headline must improve by at least this much over the champion
    slice_tolerance: float = 0.05  # no judged slice may drop by more than this
    absolute_floor: float = 0.2  # the first model's headline must be at least this
    min_slice_size: int = 20  # slices with fewer test samples (either side) are not judged
    slice_fields: tuple[str, ...] = SLICE_FIELDS
    judge_polyline_f1: bool = True  # also judge a lanes slice's polyline F1 at 1 m

    def validate(self) -> GateConfig:
        from roadvision.errors import UserError

        for name in ("min_delta", "slice_tolerance", "absolute_floor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"{name}: must be a finite number, got {value!r}")
        if not -1.0 <= self.min_delta <= 2.0:
            raise UserError(f"min_delta: {self.min_delta} is outside [-1, 2] (headline metrics "
                            "live in [-1, 1])")
        if not 0.0 <= self.slice_tolerance <= 2.0:
            raise UserError(f"slice_tolerance: {self.slice_tolerance} is outside [0, 2]")
        if not -1.0 <= self.absolute_floor <= 1.0:
            raise UserError(f"absolute_floor: {self.absolute_floor} is outside [-1, 1]")
        if self.min_slice_size < 0:
            raise UserError(f"min_slice_size: {self.min_slice_size} must be >= 0")
        return self


@dataclass
class Check:
    """One comparison the gate made."""

    kind: str  # "headline", "floor" or "slice"
    name: str  # "headline mcc", "weather=foggy"
    challenger: float | None
    champion: float | None  # the floor for kind="floor"
    required: str  # what passing needs, in words ("delta >= +0.010")
    passed: bool | None  # None = not judged (slice too small / missing on one side)
    note: str = ""
    n: int | None = None  # test samples in the slice (challenger side)

    @property
    def delta(self) -> float | None:
        if self.challenger is None or self.champion is None:
            return None
        return self.challenger - self.champion


@dataclass
class GateDecision:
    """What the gate decided and why."""

    passed: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    headline_name: str = "headline"
    challenger_version: str | None = None
    champion_version: str | None = None
    config: GateConfig = field(default_factory=GateConfig)

    @property
    def decision(self) -> str:
        return "promote" if self.passed else "refuse"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = self.decision
        return out

    def to_markdown(self) -> str:
        who = f"v{self.challenger_version}" if self.challenger_version else "the challenger"
        against = (f"champion v{self.champion_version}" if self.champion_version
                   else "the absolute floor (no champion yet)")
        lines = [
            f"# Promotion gate: {self.decision.upper()}",
            "",
            f"**{who}** against **{against}**.",
            "",
            f"**Reason:** {self.reason}",
            "",
            f"Rules: headline improves by >= {self.config.min_delta:+.3f}; no slice drops by more "
            f"than {self.config.slice_tolerance:.3f}; slices with < {self.config.min_slice_size} "
            f"samples are not judged; first model needs >= {self.config.absolute_floor:.3f}."
            + (" Lanes slices: polyline F1@1m judged likewise where the champion has it."
               if self.config.judge_polyline_f1 else ""),
            "",
            "| check | challenger | champion / floor | delta | needs | result |",
            "|---|---:|---:|---:|---|---|",
        ]
        for c in self.checks:
            lines.append(f"| {c.name} | {_fmt(c.challenger)} | {_fmt(c.champion)} | "
                         f"{_fmt(c.delta, signed=True)} | {c.required} | {_result(c)} |")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        rows = "".join(
            f"<tr class='{_result(c)}'><td>{html.escape(c.name)}</td>"
            f"<td>{_fmt(c.challenger)}</td><td>{_fmt(c.champion)}</td>"
            f"<td>{_fmt(c.delta, signed=True)}</td><td>{html.escape(c.required)}</td>"
            f"<td>{html.escape(_result(c))}</td></tr>" for c in self.checks)
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Promotion gate</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "td:first-child{text-align:left}tr.FAIL{background:#ffebe9}"
            "tr.skipped{color:#777}</style></head><body>"
            f"<h1 style='color:{colour}'>Promotion gate: {self.decision.upper()}</h1>"
            f"<p><b>Reason:</b> {html.escape(self.reason)}</p>"
            f"<p>challenger: v{html.escape(str(self.challenger_version or '?'))}, champion: "
            f"{html.escape('v' + self.champion_version if self.champion_version else 'none')}</p>"
            "<table><tr><th>check</th><th>challenger</th><th>champion / floor</th>"
            f"<th>delta</th><th>needs</th><th>result</th></tr>{rows}</table></body></html>")


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _result(check: Check) -> str:
    if check.passed is None:
        return "not compared" if check.note.startswith("not compared") else "skipped"
    return "pass" if check.passed else "FAIL"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def headline_of(metrics: Mapping[str, Any]) -> tuple[str, float | None]:
    """``(name, value)`` of a metrics dict's headline (``metrics["headline"]``)."""
    name = str(metrics.get("headline_name") or metrics.get("headline_metric") or "headline")
    return name, _number(metrics.get("headline"))


def slice_scores(metrics: Mapping[str, Any], fields: tuple[str, ...] = SLICE_FIELDS,
                 value_keys: tuple[str, ...] = _SLICE_VALUE_KEYS
                 ) -> dict[str, tuple[float | None, int | None]]:
    """``{"weather=foggy": (headline value, n)}`` from ``metrics["slices"]``.

    Accepts a slice given as a number or as a dict holding its headline under one of a few
    names (``value_keys``) and its size under ``n``/``count``/``support``. Only a slice that
    has one of ``value_keys`` is listed when they are not the headline's (a number stands for
    the headline only).
    """
    headline = value_keys == _SLICE_VALUE_KEYS
    out: dict[str, tuple[float | None, int | None]] = {}
    slices = metrics.get("slices") or {}
    for fld in fields:
        for value, entry in (slices.get(fld) or {}).items():
            score, n = _number(entry), None
            if not isinstance(entry, Mapping) and not headline:
                continue
            if isinstance(entry, Mapping):
                if not headline and not any(k in entry for k in value_keys):
                    continue
                score = next((_number(entry[k]) for k in value_keys if k in entry), None)
                n = next((int(entry[k]) for k in _SLICE_COUNT_KEYS
                          if _number(entry.get(k)) is not None), None)
            out[f"{fld}={value}"] = (score, n)
    return out


def decide(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
           config: GateConfig | None = None, *, challenger_version: str | None = None,
           champion_version: str | None = None) -> GateDecision:
    """Judge ``challenger`` against ``champion`` (None: the first model, judged on the floor)."""
    cfg = config or GateConfig()
    name, new = headline_of(challenger)
    label = f"headline {name}" if name != "headline" else "headline"
    decision = GateDecision(passed=False, reason="", headline_name=name, config=cfg,
                            challenger_version=challenger_version,
                            champion_version=champion_version if champion else None)
    if new is None:
        decision.reason = f"{label} of the challenger is undefined (empty or one-class test set?)"
        decision.checks.append(Check("headline", label, None, None, "a defined value", False))
        return decision

    if champion is None:
        ok = new >= cfg.absolute_floor
        decision.checks.append(Check("floor", label, new, cfg.absolute_floor,
                                     f">= {cfg.absolute_floor:.3f}", ok))
        decision.passed = ok
        decision.reason = (f"first model: {label} {new:.4f} "
                           f"{'clears' if ok else 'is below'} the absolute floor "
                           f"{cfg.absolute_floor:.4f}")
        return decision

    _, old = headline_of(champion)
    if old is None:
        # A champion whose score is undefined on this test set cannot block: fall back to the floor.
        ok = new >= cfg.absolute_floor
        decision.checks.append(Check("floor", label, new, cfg.absolute_floor,
                                     f">= {cfg.absolute_floor:.3f}", ok,
                                     note="champion's headline undefined on this test set"))
        decision.passed = ok
        decision.reason = (f"champion's {label} is undefined on this test set; challenger "
                           f"{new:.4f} {'clears' if ok else 'is below'} the floor "
                           f"{cfg.absolute_floor:.4f}")
        return decision

    delta = new - old
    headline_ok = delta >= cfg.min_delta - 1e-12
    decision.checks.append(Check("headline", label, new, old, f"delta >= {cfg.min_delta:+.3f}",
                                 headline_ok))

    ours, theirs = slice_scores(challenger, cfg.slice_fields), slice_scores(champion,
                                                                             cfg.slice_fields)
    judged = _judge_slices(decision, ours, theirs, cfg, "")
    if cfg.judge_polyline_f1:
        ours = slice_scores(challenger, cfg.slice_fields, (POLYLINE_KEY,))
        theirs = slice_scores(champion, cfg.slice_fields, (POLYLINE_KEY,))
        # an old champion without the figure cannot fail the challenger: not compared
        judged += _judge_slices(decision, ours, theirs if theirs else None, cfg,
                                " polyline F1@1m")

    failed = decision.failed()
    decision.passed = not failed
    if failed:
        parts = []
        for c in failed:
            if c.kind == "headline":
                parts.append(f"{c.name} {c.challenger:.4f} vs champion {c.champion:.4f}: "
                             f"delta {c.delta:+.4f} < min_delta {cfg.min_delta:+.4f}")
            else:
                parts.append(f"slice {c.name} dropped {-c.delta:.4f} "
                             f"({c.champion:.4f} -> {c.challenger:.4f}) > slice_tolerance "
                             f"{cfg.slice_tolerance:.4f}")
        decision.reason = "; ".join(parts)
    else:
        decision.reason = (f"{label} {new:.4f} improves on champion {old:.4f} by {delta:+.4f} "
                           f">= {cfg.min_delta:+.4f}; no slice drops more than "
                           f"{cfg.slice_tolerance:.4f} ({judged} slices judged)")
    return decision


def _judge_slices(decision: GateDecision, ours: dict, theirs: dict | None, cfg: GateConfig,
                  suffix: str) -> int:
    """Append one slice check per key of either side; ``theirs=None``: the champion has no
    such figure at all (each of ours reported, not compared). Returns how many were judged."""
    judged = 0
    for key in sorted(set(ours) | set(theirs or {})):
        s_new, n_new = ours.get(key, (None, None))
        s_old, n_old = (theirs or {}).get(key, (None, None))
        check = Check("slice", key + suffix, s_new, s_old,
                      f"drop <= {cfg.slice_tolerance:.3f}", None, n=n_new)
        sizes = [n for n in (n_new, n_old) if n is not None]
        if theirs is None:
            check.note = "not compared: the champion's evaluation has no such figure"
        elif s_new is None or s_old is None:
            check.note = "missing or undefined on one side"
        elif sizes and min(sizes) < cfg.min_slice_size:
            check.note = f"fewer than {cfg.min_slice_size} samples"
        else:
            check.passed = (s_old - s_new) <= cfg.slice_tolerance + 1e-12
            judged += 1
        decision.checks.append(check)
    return judged
