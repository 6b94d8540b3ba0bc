"""Length-weighted polyline precision, recall and F1 at buffer tolerances, per class.

Precision at tolerance t: the share of predicted line length lying within t metres of a true
line of the same class; recall: the share of true line length within t of a predicted line.
Pixel IoU punishes a 1 px shift of a 2 px line with IoU 1/3; this asks what a map user asks
(is the line where it should be, within t), so it is reported beside IoU, at 0.5 m and 1 m.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from shapely import MultiLineString, union_all
from shapely.geometry.base import BaseGeometry

__all__ = ["TOLERANCES", "polyline_scores", "polyline_lengths", "add_lengths",
           "scores_from_lengths", "length_within", "line_confusion"]

TOLERANCES = (0.5, 1.0)


def _lines(geoms: Iterable[BaseGeometry]) -> BaseGeometry:
    parts = []
    for g in geoms:
        if g.is_empty:
            continue
        parts.extend(getattr(g, "geoms", [g]))
    return MultiLineString(parts) if parts else MultiLineString()


def _zone(lines: BaseGeometry, tolerance: float) -> BaseGeometry:
    """The ``tolerance`` buffer of ``lines`` (flat caps: a line does not reach past its end)."""
    return union_all([lines.buffer(tolerance, cap_style="flat")])


def _length_in(lines: BaseGeometry, zone: BaseGeometry) -> float:
    return 0.0 if lines.is_empty or zone.is_empty else float(lines.intersection(zone).length)


def length_within(lines: BaseGeometry, others: BaseGeometry, tolerance: float) -> float:
    """Length of ``lines`` inside the ``tolerance`` buffer of ``others``."""
    if lines.is_empty or others.is_empty:
        return 0.0
    return _length_in(lines, _zone(others, tolerance))


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def polyline_lengths(pred: Sequence[tuple[str, BaseGeometry]],
                     truth: Sequence[tuple[str, BaseGeometry]],
                     classes: Sequence[str], tolerances: Sequence[float] = TOLERANCES
                     ) -> dict[str, dict[str, float]]:
    """Per class: ``pred``/``true`` line lengths and, per tolerance t, ``pred@t`` (predicted
    length within t of the truth) and ``true@t`` (true length within t of a prediction).
    Lengths add up over tiles, so a data set's scores are the ratios of the sums."""
    out: dict[str, dict[str, float]] = {}
    for name in classes:
        p_lines = _lines(g for c, g in pred if c == name)
        t_lines = _lines(g for c, g in truth if c == name)
        row = {"pred": p_lines.length, "true": t_lines.length}
        for tol in tolerances:
            row[f"pred@{tol:g}"] = length_within(p_lines, t_lines, tol)
            row[f"true@{tol:g}"] = length_within(t_lines, p_lines, tol)
        out[name] = row
    return out


def line_confusion(pred: Sequence[tuple[str, BaseGeometry]],
                   truth: Sequence[tuple[str, BaseGeometry]],
                   classes: Sequence[str], tolerance: float = TOLERANCES[0]
                   ) -> dict[str, dict[str, float]]:
    """Where each true class's length went: true class -> predicted class (or ``"missed"``)
    -> metres of true line within ``tolerance`` of a predicted line of that class.

    Recall says how much of a class was found; this says what the rest was called (a yellow
    dashed centre line called white dashed is a colour error, not a missed line). Where
    predictions of two classes overlap one true stretch, it counts under each, so a row may
    sum past the true length; ``missed`` is the length near no prediction at all. The row
    ``"none"`` holds each predicted class's length near no true line of any class (paint
    the truth does not count as a lane line, or no paint). Rows add up over tiles with
    :func:`add_lengths`.
    """
    pred_lines = {name: _lines(g for c, g in pred if c == name) for name in classes}
    # each predicted class buffered once; the union of those zones is "near any prediction"
    zones = {name: _zone(lines, tolerance) for name, lines in pred_lines.items()
             if not lines.is_empty}
    anything = union_all(list(zones.values())) if zones else MultiLineString()
    out: dict[str, dict[str, float]] = {}
    for name in classes:
        t_lines = _lines(g for c, g in truth if c == name)
        if t_lines.is_empty:
            continue
        row = {other: _length_in(t_lines, zones[other]) if other in zones else 0.0
               for other in pred_lines}
        row["missed"] = t_lines.length - _length_in(t_lines, anything)
        out[name] = row
    all_truth = _lines(g for _, g in truth)
    out["none"] = {name: lines.length - length_within(lines, all_truth, tolerance)
                   for name, lines in pred_lines.items()}
    return out


def add_lengths(total: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> None:
    """``total += more``, class by class and key by key."""
    for name, row in more.items():
        acc = total.setdefault(name, {})
        for key, value in row.items():
            acc[key] = acc.get(key, 0.0) + value


def scores_from_lengths(lengths: dict[str, dict[str, float]],
                        tolerances: Sequence[float] = TOLERANCES) -> dict[str, Any]:
    """Per class and tolerance: precision, recall and F1 from :func:`polyline_lengths` sums.

    A class with neither true nor predicted length scores None (nothing to measure); one
    with only one of them has F1 0 (missed entirely, or predicted where there is none), its
    undefined ratio None.
    """
    out: dict[str, Any] = {}
    for name, row in lengths.items():
        p_len, t_len = row["pred"], row["true"]
        scores: dict[str, Any] = {"pred_length_m": round(p_len, 3),
                                  "true_length_m": round(t_len, 3)}
        for tol in tolerances:
            precision = row[f"pred@{tol:g}"] / p_len if p_len else None
            recall = row[f"true@{tol:g}"] / t_len if t_len else None
            f1 = _f1(precision, recall) if p_len and t_len else (0.0 if p_len or t_len
                                                                   else None)
            scores[f"{tol:g}m"] = {"precision": precision, "recall": recall, "f1": f1}
        out[name] = scores
    return out


def polyline_scores(pred: Sequence[tuple[str, BaseGeometry]],
                    truth: Sequence[tuple[str, BaseGeometry]],
                    classes: Sequence[str], tolerances: Sequence[float] = TOLERANCES
                    ) -> dict[str, Any]:
    """Per class and tolerance: precision, recall, f1, and the lengths they come from.

    ``pred`` / ``truth``: (class name, line geometry) pairs in one metric CRS.
    """
    return scores_from_lengths(polyline_lengths(pred, truth, classes, tolerances), tolerances)
