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
CACHE_HITS = Counter("roadvision_cache_hits_total",
                     "Instances answered from the cache (Redis or its in-process copy).",
                     ["model"])
CACHE_LOCAL_HITS = Counter(
    "roadvision_cache_local_hits_total",
    "Instances answered from the in-process copy in front of Redis (also in cache_hits).",
    ["model"],
)
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


# -- canary and shadow (serving/canary.py): one served name, two arms --------------------------
#: Labels stay few: ``arm`` is champion or challenger, ``outcome`` ok, rejected or error.
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

CANARY_REQUESTS = Counter(
    "roadvision_canary_requests_total",
    "Requests each arm answered (shadow: mirrored to the challenger), by outcome: ok, rejected "
    "(4xx) or error (5xx, deadline).", ["model", "arm", "outcome"],
)
CANARY_LATENCY = Histogram(
    "roadvision_canary_latency_seconds", "Time each arm took for a request, parse to answer.",
    ["model", "arm"], buckets=LATENCY_BUCKETS,
)
CANARY_SCORE = Histogram(
    "roadvision_canary_score", "Roadwork probability each arm answered, per instance.",
    ["model", "arm"], buckets=SCORE_BUCKETS,
)
CANARY_POSITIVES = Counter(
    "roadvision_canary_positive_instances_total",
    "Instances each arm labelled roadwork (label 1).", ["model", "arm"],
)
CANARY_AGREEMENT = Counter(
    "roadvision_canary_agreement_total",
    "Shadow mode: instances both arms answered, by whether the answers agree (roadwork: same "
    "label; lanes: class shares within 0.05 total variation).", ["model", "result"],
)
CANARY_SHADOW_SKIPPED = Counter(
    "roadvision_canary_shadow_skipped_total",
    "Requests not mirrored to the challenger because too many mirrors were in flight.",
    ["model"],
)
CANARY_ARM_INFO = Gauge(
    "roadvision_canary_arm_info",
    "The version each arm serves (bundle hash, MLflow registry name and version); value 1.",
    ["model", "arm", "version", "registry_name", "registry_version"],
)
CANARY_PERCENT = Gauge(
    "roadvision_canary_challenger_percent",
    "Share of requests the challenger answers (mode split) or is sent as a shadow (mode "
    "shadow); 0 while no challenger is loaded.", ["model", "mode"],
)

CANARY_METRIC_NAMES = (
    "roadvision_canary_requests_total",
    "roadvision_canary_latency_seconds",
    "roadvision_canary_score",
    "roadvision_canary_positive_instances_total",
    "roadvision_canary_agreement_total",
    "roadvision_canary_shadow_skipped_total",
    "roadvision_canary_arm_info",
    "roadvision_canary_challenger_percent",
)


def set_arm_info(model: str, arm: str, version: str, *, registry_name: str = "",
                 registry_version: str = "") -> None:
    """Publish the version ``arm`` serves; drops that arm's previous series after a reload."""
    clear_arm_info(model, arm)
    CANARY_ARM_INFO.labels(model=model, arm=arm, version=version, registry_name=registry_name,
                           registry_version=registry_version).set(1)


def clear_arm_info(model: str, arm: str) -> None:
    """No series for ``arm`` (its version failed to load, or it is no longer served)."""
    for labels in list(CANARY_ARM_INFO._metrics):  # noqa: SLF001 - prometheus_client has no public API
        if labels[0] == model and labels[1] == arm:
            CANARY_ARM_INFO.remove(*labels)


def reset_arm(model: str, arm: str) -> None:
    """Drop ``arm``'s request, latency and score series and the model's agreement counts: a
    new version starts from zero, so that no figure mixes two versions (Prometheus' ``rate``
    reads a vanished series as a counter reset)."""
    for metric in (CANARY_REQUESTS, CANARY_LATENCY, CANARY_SCORE, CANARY_POSITIVES):
        for labels in list(metric._metrics):  # noqa: SLF001 - prometheus_client has no public API
            if labels[0] == model and labels[1] == arm:
                metric.remove(*labels)
    for labels in list(CANARY_AGREEMENT._metrics):  # noqa: SLF001
        if labels[0] == model:
            CANARY_AGREEMENT.remove(*labels)


# -- imagery tile providers of the areas route (serving/area_imagery.py) -----------------------
#: ``provider`` is a tile provider's name in the chain file: bounded by the operator's config.
IMAGERY_PROVIDER_FAILURES = Counter(
    "roadvision_imagery_provider_failures_total",
    "Tile fetches of the areas route that failed for the provider's sake (unreachable, timed "
    "out, HTTP 5xx / 401 / 403 / 408 / 429, not an image; not a 404), by tile provider.",
    ["provider"],
)
IMAGERY_PROVIDER_CIRCUIT_OPEN = Gauge(
    "roadvision_imagery_provider_circuit_open",
    "1 while a tile provider's circuit is open (skipped at once after consecutive fetch "
    "failures, until its cooldown ends); 0 when closed or half-open (the next fetch is a "
    "trial).", ["provider"],
)

IMAGERY_METRIC_NAMES = (
    "roadvision_imagery_provider_failures_total",
    "roadvision_imagery_provider_circuit_open",
)
