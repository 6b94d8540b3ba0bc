"""Drift figures for Prometheus: pushed to a Pushgateway, or written for a textfile collector.

A drift check is a batch job (a CronJob, a pipeline step), gone before Prometheus could scrape
it, so it pushes its figures (Prometheus' advice for batch jobs) to a Pushgateway under
``job=roadvision-drift`` grouped by ``model``; where a node exporter's textfile collector is the
house way, ``--metrics-file`` writes the same figures in the text format instead. The names are
a contract with the alert rules (``helm/roadvision/templates/prometheusrule.yaml``).
"""

from __future__ import annotations

import time
from pathlib import Path

from .drift import DriftResult

__all__ = ["METRIC_NAMES", "build_registry", "push", "write_textfile"]

METRIC_NAMES = (
    "roadvision_drift_detected",
    "roadvision_drift_p_value",
    "roadvision_drift_statistic",
    "roadvision_drift_rows",
    "roadvision_drift_last_run_timestamp_seconds",
)
JOB = "roadvision-drift"


def build_registry(result: DriftResult, model: str):
    """A fresh ``CollectorRegistry`` holding ``result``'s figures for ``model``."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    detected = Gauge("roadvision_drift_detected",
                     "1 when the last check found input drift (embedding MMD p < alpha).",
                     ["model"], registry=registry)
    p_value = Gauge("roadvision_drift_p_value", "p-value of each drift test of the last check.",
                    ["model", "test"], registry=registry)
    statistic = Gauge("roadvision_drift_statistic", "Statistic of each drift test.",
                      ["model", "test"], registry=registry)
    rows = Gauge("roadvision_drift_rows", "Rows compared by the last check.", ["model", "side"],
                 registry=registry)
    last = Gauge("roadvision_drift_last_run_timestamp_seconds",
                 "When the last drift check finished (Unix seconds).", ["model"],
                 registry=registry)
    detected.labels(model).set(1 if result.drifted else 0)
    for test in result.tests():
        p_value.labels(model, test.name).set(test.p_value)
        statistic.labels(model, test.name).set(test.statistic)
    rows.labels(model, "reference").set(result.n_reference)
    rows.labels(model, "current").set(result.n_current)
    last.labels(model).set(time.time())
    return registry


def write_textfile(result: DriftResult, model: str, path: str | Path) -> Path:
    """Write the figures for a node exporter's textfile collector (atomically)."""
    from prometheus_client import write_to_textfile

    write_to_textfile(str(path), build_registry(result, model))
    return Path(path)


def push(result: DriftResult, model: str, gateway: str) -> None:
    """Push the figures to a Pushgateway (``host:port`` or URL), replacing this model's group."""
    from prometheus_client import push_to_gateway

    push_to_gateway(gateway, job=JOB, registry=build_registry(result, model),
                    grouping_key={"model": model})
