"""Vector metrics for a lanes evaluation: polyline precision / recall / F1 per class at 0.5 m
and 1 m, beside per-class IoU.

A data set in the data contract holds class masks, not vectors, so both sides are centre
lines traced from masks (``roadvision.geo.features.trace_block``): the truth from the true
mask, the prediction from the predicted one, in metres at the bundle's ground sample distance
(``roadvision.geo.gsd``; the default when the bundle records none, and the result says so).
Where exact truth vectors exist (the generator's GeoTIFF tiles), ``benchmarks/bench_geo.py``
scores against those instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from affine import Affine

from roadvision.geo.features import trace_block
from roadvision.geo.gsd import model_gsd
from roadvision.geo.metrics import TOLERANCES, add_lengths, polyline_lengths, scores_from_lengths

__all__ = ["mask_vector_metrics"]


def _lines(mask: np.ndarray, classes: Sequence[str], gsd: float) -> list[tuple[str, Any]]:
    transform = Affine(gsd, 0, 0, 0, -gsd, 0)
    ones = np.ones(mask.shape, np.float32)
    return [(classes[p.cls], p.line)
            for p in trace_block(mask, ones, transform, gsd, len(classes))]


def mask_vector_metrics(pairs: Iterable[tuple[np.ndarray, np.ndarray]], classes: Sequence[str],
                        bundle_config: dict[str, Any] | None = None,
                        tolerances: Sequence[float] = TOLERANCES) -> dict[str, Any]:
    """Polyline scores over (true mask, predicted mask) pairs, lengths summed over tiles."""
    gsd, assumed = model_gsd(bundle_config or {})
    totals: dict[str, dict[str, float]] = {}
    lane_classes = list(classes[1:])
    for truth, pred in pairs:
        add_lengths(totals, polyline_lengths(_lines(pred, classes, gsd),
                                             _lines(truth, classes, gsd), lane_classes,
                                             tolerances))
    return {"truth": "mask centre lines", "gsd_m": gsd, "gsd_assumed": assumed,
            "per_class": scores_from_lengths(totals, tolerances) if totals else {}}
