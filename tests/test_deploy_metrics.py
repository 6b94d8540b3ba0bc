"""Every metric the dashboard and the alerts read exists on a live predictor's /metrics.

The predictor is the real `python -m roadvision.serving` on a tiny bundle with a real Redis;
a miss, a cache hit and a rejected request run first, so labelled families have samples.
Tests that need it are marked slow: the first one pays the predictor's start (~20-40 s).
"""

from __future__ import annotations

import json

import pytest
from _deploy import (
    CHART,
    MANIFESTS,
    alert_exprs,
    dashboard_exprs,
    exposed_series_names,
    find,
    kustomize_build,
    live_predictor_for,
    promql_metric_names,
    render_chart,
    values_file,
)


@pytest.fixture(scope="session")
def live_predictor(request, tmp_path_factory):
    return live_predictor_for(request, tmp_path_factory)


@pytest.fixture(scope="module")
def exposed(live_predictor) -> set[str]:
    return exposed_series_names(live_predictor.metrics())


def _dashboard():
    return json.loads((CHART / "dashboards" / "roadvision.json").read_text())


def _rules():
    chart_rule = find(render_chart(values_file("prod")), "PrometheusRule")
    base_rule = find(kustomize_build(MANIFESTS / "base"), "PrometheusRule")
    return {"chart": alert_exprs(chart_rule), "kustomize": alert_exprs(base_rule)}


def test_promql_metric_names_finds_metrics_not_functions_or_labels():
    expr = ('histogram_quantile(0.99, sum by (model, le) (rate(foo_seconds_bucket{model=~"$model",'
            'status=~"5.."}[$__rate_interval]))) / ignoring(le) bar_total > 0.5 and on(model) baz')
    assert promql_metric_names(expr) == {"foo_seconds_bucket", "bar_total", "baz"}


@pytest.mark.slow
def test_live_predictor_answered_the_traffic(live_predictor):
    assert live_predictor.statuses[:2] == [200, 200]
    assert 400 <= live_predictor.statuses[2] < 500


@pytest.mark.slow
def test_every_dashboard_metric_is_exposed(exposed):
    used = set().union(*(promql_metric_names(e) for e in dashboard_exprs(_dashboard())))
    assert {"roadvision_cache_hits_total", "roadvision_batch_size_bucket",
            "roadvision_tta_passes_total", "roadvision_rejections_total"} <= used
    assert sorted(used - exposed) == []


@pytest.mark.slow
@pytest.mark.parametrize("source", ["chart", "kustomize"])
def test_every_alert_metric_is_exposed(exposed, source):
    rules = _rules()[source]
    assert {"RoadvisionHighP99Latency", "RoadvisionHighErrorRate", "RoadvisionLowCacheHitRatio",
            "RoadvisionModelNotReady"} <= set(rules)
    used = set().union(*(promql_metric_names(e) for e in rules.values()))
    assert sorted(used - exposed) == []


@pytest.mark.slow
def test_a_misspelt_metric_name_is_caught(exposed):
    dashboard = _dashboard()
    dashboard["panels"][0]["targets"][0]["expr"] = "sum(roadvision_cache_hit_total)"  # no "s"
    used = set().union(*(promql_metric_names(e) for e in dashboard_exprs(dashboard)))
    assert used - exposed == {"roadvision_cache_hit_total"}


@pytest.mark.slow
def test_the_serving_metric_contract_is_exposed(exposed):
    """The names the brief fixes for dashboards and alerts, as series a scrape produces."""
    from roadvision.serving.metrics import METRIC_NAMES

    for name in METRIC_NAMES:
        assert {name, f"{name}_bucket"} & exposed, name
    assert "roadvision_cache_hits_total" in exposed and "roadvision_model_ready" in exposed
