"""The promotion gate's rule, on hand-made metric dicts (no MLflow, no KFP)."""

from __future__ import annotations

import pytest

from roadvision.errors import UserError
from roadvision.gate import GateConfig, decide, slice_scores


def metrics(headline, **slices):
    """{"headline": h, "slices": {"weather": {"rainy": {"mcc": v, "n": n}}}} from w_rainy=(v, n)."""
    out: dict = {"headline": headline, "headline_name": "mcc", "slices": {}}
    for key, (value, n) in slices.items():
        field, _, name = key.partition("_")
        field = {"w": "weather", "d": "daytime", "s": "scene", "c": "city"}[field]
        out["slices"].setdefault(field, {})[name] = {"mcc": value, "n": n}
    return out


CFG = GateConfig(min_delta=0.01, slice_tolerance=0.05, absolute_floor=0.2, min_slice_size=20)


def test_first_model_is_judged_on_the_floor():
    ok = decide(metrics(0.35), None, CFG)
    assert ok.passed and "first model" in ok.reason and "clears" in ok.reason
    low = decide(metrics(0.15), None, CFG)
    assert not low.passed and "below the absolute floor 0.2000" in low.reason


def test_better_headline_and_stable_slices_pass():
    new = metrics(0.60, w_rainy=(0.50, 40), d_night=(0.40, 30))
    old = metrics(0.55, w_rainy=(0.52, 40), d_night=(0.41, 30))
    decision = decide(new, old, CFG, challenger_version="2", champion_version="1")
    assert decision.passed, decision.reason
    assert "improves on champion 0.5500 by +0.0500" in decision.reason
    assert "2 slices judged" in decision.reason


def test_too_small_improvement_is_refused_naming_the_headline():
    decision = decide(metrics(0.555), metrics(0.55), CFG)
    assert not decision.passed
    assert decision.reason.startswith("headline mcc 0.5550 vs champion 0.5500")
    assert "min_delta +0.0100" in decision.reason


def test_a_slice_drop_beyond_tolerance_is_refused_naming_the_slice():
    new = metrics(0.70, w_foggy=(0.30, 25), w_clear=(0.80, 100))
    old = metrics(0.60, w_foggy=(0.40, 25), w_clear=(0.75, 100))
    decision = decide(new, old, CFG)
    assert not decision.passed
    assert "slice weather=foggy dropped 0.1000" in decision.reason
    assert "headline" not in decision.reason  # the headline itself was fine
    assert [c.name for c in decision.failed()] == ["weather=foggy"]


def test_small_or_one_sided_slices_are_reported_but_not_judged():
    new = metrics(0.70, c_tiny=(0.0, 3), w_snowy=(0.1, 50))
    old = metrics(0.60, c_tiny=(0.9, 3))
    decision = decide(new, old, CFG)
    assert decision.passed
    notes = {c.name: (c.passed, c.note) for c in decision.checks if c.kind == "slice"}
    assert notes["city=tiny"] == (None, "fewer than 20 samples")
    assert notes["weather=snowy"][0] is None
    # with the size limit off, the same slice vetoes
    strict = decide(new, old, GateConfig(min_slice_size=0))
    assert not strict.passed and "slice city=tiny" in strict.reason


def test_undefined_headline_is_refused_and_reports_render():
    decision = decide({"headline": None}, metrics(0.5), CFG)
    assert not decision.passed and "undefined" in decision.reason
    ok = decide(metrics(0.6, w_rainy=(0.5, 40)), metrics(0.5, w_rainy=(0.5, 40)), CFG,
                challenger_version="7", champion_version="3")
    md, html = ok.to_markdown(), ok.to_html()
    assert "PROMOTE" in md and "v7" in md and "champion v3" in md and "weather=rainy" in md
    assert "<table>" in html and "weather=rainy" in html
    assert ok.to_dict()["decision"] == "promote"


def test_slice_scores_accepts_numbers_and_dicts():
    scores = slice_scores({"slices": {"weather": {"a": 0.5, "b": {"headline": 0.2, "count": 9}},
                                      "city": {"x": {"miou_no_bg": 0.3}}}})
    assert scores == {"weather=a": (0.5, None), "weather=b": (0.2, 9), "city=x": (0.3, None)}


@pytest.mark.parametrize("field,value", [("min_delta", 3.0), ("slice_tolerance", -0.1),
                                         ("absolute_floor", 1.5), ("min_delta", float("nan"))])
def test_bad_tolerances_name_the_parameter(field, value):
    with pytest.raises(UserError, match=f"^{field}:"):
        GateConfig(**{field: value}).validate()


def lanes(headline, **slices):
    """Lanes metrics: slice c_<city>=(miou, polyline F1@1m or None to leave it out, n)."""
    out: dict = {"headline": headline, "headline_name": "miou_no_bg", "slices": {"city": {}}}
    for key, (miou, f1, n) in slices.items():
        entry = {"n": n, "miou_no_bg": miou}
        if f1 is not None:
            entry["polyline_f1_1m"] = f1
        out["slices"]["city"][key.removeprefix("c_")] = entry
    return out


def test_polyline_f1_drop_in_a_slice_is_refused_beside_a_stable_iou():
    new = lanes(0.60, c_berlin=(0.50, 0.60, 40), c_paris=(0.50, 0.80, 40))
    old = lanes(0.55, c_berlin=(0.50, 0.70, 40), c_paris=(0.49, 0.79, 40))
    decision = decide(new, old, CFG)
    assert not decision.passed
    assert [c.name for c in decision.failed()] == ["city=berlin polyline F1@1m"]
    assert "slice city=berlin polyline F1@1m dropped 0.1000" in decision.reason
    # within tolerance passes, and the polyline checks count among the judged slices
    new["slices"]["city"]["berlin"]["polyline_f1_1m"] = 0.66
    ok = decide(new, old, CFG)
    assert ok.passed and "4 slices judged" in ok.reason
    # turned off: only the IoU slices are judged
    off = decide(new | {}, old, GateConfig(judge_polyline_f1=False))
    assert not any("polyline" in c.name for c in off.checks)


def test_an_old_champion_without_polyline_f1_is_not_compared_never_failed():
    new = lanes(0.60, c_berlin=(0.50, 0.10, 40))
    old = lanes(0.55, c_berlin=(0.50, None, 40))
    decision = decide(new, old, CFG)
    assert decision.passed, decision.reason
    check = next(c for c in decision.checks if "polyline" in c.name)
    assert check.passed is None and check.champion is None and check.challenger == 0.10
    assert "| city=berlin polyline F1@1m | 0.1000 | - | - |" in decision.to_markdown()
    assert "not compared |" in decision.to_markdown()
