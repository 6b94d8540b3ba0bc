"""Vector metrics for a lanes evaluation: polyline precision / recall / F1 per class at 0.5 m
and 1 m, beside per-class IoU, for the whole split and for each slice.

A data set in the data contract holds class masks, not vectors, so both sides are centre
lines traced from masks (``roadvision.geo.features.trace_block``): the truth from the true
mask, the prediction from the predicted one, in metres at the bundle's ground sample distance
(``roadvision.geo.gsd``; the default when the bundle records none, and the result says so).
Where exact truth vectors exist (the generator's GeoTIFF tiles), ``benchmarks/bench_geo.py``
scores against those instead.

Each image's line lengths are traced once (:func:`image_vector_lengths`); the split's scores
and every slice's (``roadvision.evaluation.slices``) are ratios of sums of those lengths
(:func:`vector_scores`), so a slice costs no second tracing. The split's entry also says where
each true class's length went (``geo.metrics.line_confusion`` at the first tolerance): a dashed
line called solid, or an arrow called a dash, shows there and not in the F1 alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

from roadvision.geo.features import trace_block
from roadvision.geo.gsd import model_gsd
from roadvision.geo.metrics import (
    TOLERANCES,
    add_lengths,
    line_confusion,
    polyline_lengths,
    scores_from_lengths,
)

__all__ = ["ImageLengths", "image_vector_lengths", "vector_scores", "f1_summary",
           "mask_vector_metrics"]

#: One image's per-class lengths: ``{class: {"pred", "true", "pred@0.5", "true@0.5", ...}}``.
Lengths = dict[str, dict[str, float]]


def _lines(mask: np.ndarray, classes: Sequence[str], gsd: float) -> list[tuple[str, Any]]:
    transform = Affine(gsd, 0, 0, 0, -gsd, 0)
    ones = np.ones(mask.shape, np.float32)
    return [(classes[p.cls], p.line)
            for p in trace_block(mask, ones, transform, gsd, len(classes))]


@dataclass
class ImageLengths:
    """Polyline lengths of every image of an evaluation, in row order, and the GSD used."""

    per_image: list[Lengths]
    confusion: list[Lengths]  # per image: line_confusion at tolerances[0]
    gsd_m: float
    gsd_assumed: bool
    tolerances: tuple[float, ...] = TOLERANCES

    def summary(self, rows: Iterable[int] | None = None) -> dict[str, Any]:
        """The ``vector_metrics`` entry of evaluate's result (over ``rows``; default all)."""
        picked = range(len(self.per_image)) if rows is None else list(rows)
        out = {"truth": "mask centre lines", "gsd_m": self.gsd_m,
               "gsd_assumed": self.gsd_assumed,
               "per_class": vector_scores([self.per_image[i] for i in picked],
                                          self.tolerances)}
        totals: Lengths = {}
        for i in picked:
            add_lengths(totals, self.confusion[i])
        out[f"confusion_{self.tolerances[0]:g}m"] = {
            true: {called: round(v, 3) for called, v in row.items()}
            for true, row in totals.items()}
        return out


def image_vector_lengths(pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                         classes: Sequence[str], bundle_config: dict[str, Any] | None = None,
                         tolerances: Sequence[float] = TOLERANCES) -> ImageLengths:
    """Trace each (true mask, predicted mask) pair once; lengths per class, per image, and
    where each true class's length went."""
    gsd, assumed = model_gsd(bundle_config or {})
    lane_classes = list(classes[1:])
    per_image, confusion = [], []
    for truth, pred in pairs:
        p_lines, t_lines = _lines(pred, classes, gsd), _lines(truth, classes, gsd)
        per_image.append(polyline_lengths(p_lines, t_lines, lane_classes, tolerances))
        confusion.append(line_confusion(p_lines, t_lines, lane_classes, tolerances[0]))
    return ImageLengths(per_image, confusion, gsd, assumed, tuple(tolerances))


def vector_scores(lengths: Iterable[Lengths], tolerances: Sequence[float] = TOLERANCES
                  ) -> dict[str, Any]:
    """Per class and tolerance: precision, recall, F1 of the summed lengths ({} when none)."""
    totals: Lengths = {}
    for one in lengths:
        add_lengths(totals, one)
    return scores_from_lengths(totals, tolerances) if totals else {}


def f1_summary(per_class: dict[str, Any], tolerance: float = 1.0) -> float | None:
    """The mean F1 at ``tolerance`` over the classes where it is defined (None: none is):
    one number per slice, for the gate."""
    values = [s[f"{tolerance:g}m"]["f1"] for s in per_class.values()
              if s.get(f"{tolerance:g}m", {}).get("f1") is not None]
    return float(np.mean(values)) if values else None


def mask_vector_metrics(pairs: Iterable[tuple[np.ndarray, np.ndarray]], classes: Sequence[str],
                        bundle_config: dict[str, Any] | None = None,
                        tolerances: Sequence[float] = TOLERANCES) -> dict[str, Any]:
    """Polyline scores over (true mask, predicted mask) pairs, lengths summed over tiles."""
    return image_vector_lengths(pairs, classes, bundle_config, tolerances).summary()
