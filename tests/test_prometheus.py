"""A real Prometheus (Debian's `prometheus` package) scrapes a live predictor and loads our alerts.

The rule file is what the Prometheus operator generates from the PrometheusRule: its
`spec.groups`. Prometheus listens on a loopback port and is queried through its HTTP API.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from _deploy import find, live_predictor_for, prometheus_rule_file, render_chart, values_file
from conftest import free_port, wait_for_port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test` (scripts/system-deps.sh "
                    "installs it)")
    return path


@pytest.fixture(scope="session")
def live_predictor(request, tmp_path_factory):
    return live_predictor_for(request, tmp_path_factory)


@pytest.fixture(scope="module")
def rule() -> dict:
    return find(render_chart(values_file("prod")), "PrometheusRule")


def _start_prometheus(workdir: Path, targets: list[str], rule_text: str):
    (workdir / "rules.yaml").write_text(rule_text)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": "roadvision", "metrics_path": "/metrics",
                            "static_configs": [{"targets": targets}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir)
    return proc, port


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return (out or b"").decode(errors="replace")


def _poll(fn, timeout: float = 40.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def test_promtool_accepts_the_rules_and_rejects_a_broken_rule(tmp_path, rule):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (the Prometheus test below loads the rules too)")
    good = tmp_path / "rules.yaml"
    good.write_text(prometheus_rule_file(rule))
    result = subprocess.run([promtool, "check", "rules", str(good)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule['spec']['groups'][0]['rules'])} rules found" in result.stdout

    broken = dict(rule, spec={"groups": [dict(rule["spec"]["groups"][0])]})
    broken["spec"]["groups"][0]["rules"] = [
        dict(r, expr=r["expr"].replace("histogram_quantile", "histogram_quantil"))
        for r in rule["spec"]["groups"][0]["rules"]]
    bad = tmp_path / "bad.yaml"
    bad.write_text(prometheus_rule_file(broken))
    result = subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "histogram_quantil" in result.stdout + result.stderr


@pytest.mark.slow  # starts the predictor (~20-40 s) unless test_deploy_metrics already did
def test_prometheus_scrapes_the_predictor_and_loads_the_alerts(tmp_path, rule, live_predictor):
    alerts = {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}
    proc, port = _start_prometheus(tmp_path, [f"127.0.0.1:{live_predictor.port}"],
                                   prometheus_rule_file(rule))
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for_port(port, timeout=30)
        _poll(lambda: httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=5).status_code == 200)

        def cache_hits():
            body = httpx.get(f"{api}/query", params={"query": "roadvision_cache_hits_total"},
                             timeout=5).json()
            assert body["status"] == "success", body
            return body["data"]["result"]

        (series,) = _poll(cache_hits)
        assert series["metric"]["model"] == live_predictor.model_name
        assert series["metric"]["job"] == "roadvision"
        assert float(series["value"][1]) >= 1  # the fixture's second request was a hit

        def evaluated_rules():
            groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r.get("health") == "ok" for r in rules) else None

        rules = _poll(evaluated_rules)
        assert {r["name"] for r in rules} == alerts
        assert all(r["type"] == "alerting" for r in rules)
        # The ready gauge is 1, so "model not ready" must not be pending or firing.
        not_ready = next(r for r in rules if r["name"] == "RoadvisionModelNotReady")
        assert not_ready["state"] == "inactive"
    finally:
        log = _stop(proc)
    assert "level=error" not in log, log


def test_prometheus_refuses_a_broken_rule_file(tmp_path, rule):
    broken = prometheus_rule_file(rule).replace("sum by (model)", "sum by model", 1)
    proc, _ = _start_prometheus(tmp_path, ["127.0.0.1:1"], broken)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _stop(proc)
        pytest.fail("Prometheus started with a broken rule file")
    output = proc.stdout.read().decode(errors="replace")
    assert code != 0
    assert "rules.yaml" in output
