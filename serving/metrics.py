"""Prometheus metrics, module-level like ``kserve.metrics``, in the default registry.

KServe's ``/metrics`` route renders ``prometheus_client.REGISTRY``, so these appear on the HTTP
port beside KServe's own ``request_{preprocess,predict,postprocess}_seconds`` histograms.
The names are a contract with the deployment's dashboards and alerts: do not rename them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Used as the ``model`` label for names that are not served (bounded label cardinality).
UNKNOWN_MODEL = "_unknown"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "roadvision_requests_total", "Inference requests by final HTTP status.",
    ["model", "protocol", "status"],
)
LATENCY = Histogram(
    "roadvision_request_latency_seconds", "Inference request latency, body read to response.",
    ["model", "protocol"], buckets=LATENCY_BUCKETS,
)
CACHE_HITS = Counter("roadvision_cache_hits_total", "Instances answered from Redis.", ["model"])
CACHE_MISSES = Counter(
    "roadvision_cache_misses_total", "Instances looked up in Redis and not found.", ["model"]
)
CACHE_ERRORS = Counter(
    "roadvision_cache_errors_total",
    "Instances served uncached because Redis failed or its circuit was open.", ["model"],
)
TTA_PASSES = Counter(
    "roadvision_tta_passes_total", "Instances run through the model, by TTA mode.",
    ["model", "mode"],
)
BATCH_SIZE = Histogram(
    "roadvision_batch_size", "Instances per model forward (micro-batching).",
    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
REJECTIONS = Counter(
    "roadvision_rejections_total", "Refused requests by reason (4xx).", ["model", "reason"],
)
MODEL_INFO = Gauge(
    "roadvision_model_info",
    "Served model: name, version (bundle hash), task, and the MLflow registry's name, version "
    "and alias it was loaded through (empty when loaded from a folder); value 1.",
    ["model", "version", "task", "registry_name", "registry_version", "alias"],
)
MODEL_READY = Gauge("roadvision_model_ready", "1 when the model answers requests.", ["model"])
INFLIGHT = Gauge(
    "roadvision_inflight_requests", "Inference requests being processed now.", ["model"],
)
RATELIMIT_ERRORS = Counter(
    "roadvision_ratelimit_errors_total",
    "Rate-limit checks that could not reach Redis (policy open: let through unchecked; "
    "closed: refused with 503). Alert on any increase.",
    ["model"],
)

#: Every metric name above plus KServe's step histograms (tests and the chart check these).
METRIC_NAMES = (
    "roadvision_requests_total",
    "roadvision_request_latency_seconds",
    "roadvision_cache_hits_total",
    "roadvision_cache_misses_total",
    "roadvision_cache_errors_total",
    "roadvision_tta_passes_total",
    "roadvision_batch_size",
    "roadvision_rejections_total",
    "roadvision_model_info",
    "roadvision_model_ready",
    "request_preprocess_seconds",
    "request_predict_seconds",
    "request_postprocess_seconds",
)


def set_model_info(model: str, version: str, task: str, *, registry_name: str = "",
                   registry_version: str = "", alias: str = "") -> None:
    """Publish the served version; drops the previous version's series after a reload."""
    for labels in list(MODEL_INFO._metrics):  # noqa: SLF001 - prometheus_client has no public API
        if labels[0] == model:
            MODEL_INFO.remove(*labels)
    MODEL_INFO.labels(model=model, version=version, task=task, registry_name=registry_name,
                      registry_version=registry_version, alias=alias).set(1)
