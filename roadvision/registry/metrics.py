"""Nested metric dicts as the flat, finite numbers MLflow metrics and tags take."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["flatten_metrics", "metric_name"]


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts -> ``{"headline": .., "slices.weather.clear.mcc": ..}``.

    Non-numeric leaves (lists such as confusion matrices, strings) and NaN/inf are left out:
    MLflow metrics and tags want finite numbers.
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            flat[name] = float(value)
    return flat


def metric_name(name: str) -> str:
    """``name`` with the characters MLflow refuses in a metric name replaced by ``_``."""
    # MLflow accepts alphanumerics, _ - . space / : only; slice values such as "dawn/dusk" fit.
    return re.sub(r"[^\w\-. /:]", "_", name)
