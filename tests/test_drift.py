"""Drift monitoring: the tests themselves, the reference, the CLI, and one end-to-end run.

End to end: a real predictor (KServe ModelServer subprocess) logs its payloads to a folder;
in-distribution traffic from the synthetic generator -> ``roadvision monitor drift`` says no
drift; fog-at-night traffic (the generator's own fog and night) -> drift, with the Prometheus
figure and the HTML report; the figure fires the alert in a real Prometheus. Scores here are on
synthetic data (and a tiny random model).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from roadvision.data.images import encode_jpeg
from roadvision.monitoring.drift import compare, ks_test, mmd_test, proportion_test
from roadvision.monitoring.features import image_stats
from roadvision.monitoring.reference import REFERENCE_FILE, load_reference
from roadvision.monitoring.shifted import shifted_roadwork
from tests._cli import one_line_error, run_main
from tests._serving import ServingServer, b64, make_bundle, metric_value

# -- the statistics -----------------------------------------------------------------------------


def test_mmd_false_alarms_stay_near_alpha_and_a_mean_shift_is_found():
    rng = np.random.default_rng(0)
    null_p = [mmd_test(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), permutations=99,
                       seed=k).p_value for k in range(40)]
    assert sum(p < 0.05 for p in null_p) <= 6  # 2 expected at alpha 0.05; 6 is p < 0.01
    assert 0.3 < float(np.mean(null_p)) < 0.7  # roughly uniform under the null
    shifted = mmd_test(rng.normal(size=(40, 8)), rng.normal(0.6, 1.0, size=(40, 8)),
                       permutations=99)
    assert shifted.drifted and shifted.p_value == pytest.approx(0.01)  # the smallest p of 99


def test_mmd_stays_calibrated_on_sparse_relu_features():
    """Encoder embeddings are sparse (ReLU6): many features are zero in one split and not in
    the other. Scaled by one side's spread, such splits look like drift (25 of 30 alarms here
    before the scale came from the pooled sample)."""
    rng = np.random.default_rng(0)
    alarms = 0
    for k in range(30):
        pool = np.maximum(rng.normal(size=(40, 256)) - 2.5, 0.0)
        alarms += mmd_test(pool[:20], pool[20:], permutations=99, seed=k).drifted
    assert alarms <= 5


def test_univariate_tests_see_what_they_should():
    rng = np.random.default_rng(1)
    same = ks_test("x", rng.normal(size=200), rng.normal(size=200))
    moved = ks_test("x", rng.normal(size=200), rng.normal(0.5, 1, size=200))
    assert not same.drifted and moved.drifted and moved.current > moved.reference
    rate = proportion_test("positive_rate", np.r_[np.ones(50), np.zeros(50)],
                           np.r_[np.ones(80), np.zeros(20)])
    assert rate.drifted and rate.reference == 0.5 and rate.current == 0.8
    assert not proportion_test("p", np.ones(10), np.ones(10)).drifted  # no variance: no drift


def test_image_statistics_order_fog_night_and_grey():
    grey = np.full((32, 32, 3), 128, np.uint8)
    dark = (grey * 0.2).astype(np.uint8)
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[:, :16] = (255, 0, 0)
    colour[:, 16:] = (0, 0, 255)
    stats = image_stats([grey, dark, colour])
    assert stats[0, 0] > stats[1, 0]  # brightness
    assert stats[0, 1] == 0 and stats[2, 1] > 0  # contrast
    assert stats[0, 2] == 0 and stats[2, 2] > 50  # colourfulness


def test_compare_without_logged_images_skips_input_drift_with_a_note():
    reference = {"embeddings": np.zeros((4, 2)), "stats": np.zeros((4, 3)),
                 "probability": np.array([0.1, 0.2, 0.3, 0.4]), "label": np.zeros(4),
                 "class_shares": {}}
    current = {"embeddings": None, "stats": None, "probability": np.array([0.2, 0.3]),
               "label": np.zeros(2), "class_shares": {}}
    result = compare(reference, current, permutations=19)
    assert result.input is None and not result.drifted and result.prediction
    assert "no logged images" in result.notes[0]


def test_lanes_features_hold_embeddings_and_class_shares(tmp_path):
    from roadvision.models.bundle import load_bundle
    from roadvision.monitoring.reference import image_features

    model = load_bundle(make_bundle("lanes_tiny", tmp_path / "lanes", 0))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    features = image_features(model, images)
    assert features["embeddings"].shape[0] == 3 and features["probability"] is None
    assert set(features["class_shares"]) == set(model.cfg.classes)
    total = sum(features["class_shares"][c] for c in model.cfg.classes)
    assert np.allclose(total, 1.0)


# -- end to end ---------------------------------------------------------------------------------

def _send(server: ServingServer, pairs: list[tuple[np.ndarray, dict]], per_request: int = 6):
    for start in range(0, len(pairs), per_request):
        body = {"instances": [{"image_b64": b64(encode_jpeg(image, 90)), "metadata": meta}
                              for image, meta in pairs[start:start + per_request]]}
        response = httpx.post(f"{server.url}/v1/models/roadwork:predict", json=body, timeout=60)
        assert response.status_code == 200, response.text


def _wait_for_rows(folder: Path, n: int, timeout: float = 20.0) -> None:
    from roadvision.monitoring.records import read_logged

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(folder.rglob("*.parquet")) and len(read_logged(folder)) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} logged rows in {folder} after {timeout}s")


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    from roadvision.data.synth import generate

    root = tmp_path_factory.mktemp("drift")
    bundle = make_bundle("roadwork_tiny", root / "bundle", 0)
    generate("roadwork", 40, 0, root / "train", size=(96, 64))
    server = ServingServer(
        args=["--model", f"roadwork={bundle}", "--payload_log_uri", str(root / "log"),
              "--payload_log_sample_rate", "1", "--payload_log_flush_s", "0.2",
              "--forward_workers", "0"],
        log_path=root / "server.log")
    server.start(ready_models=("roadwork",))
    yield root, bundle, server
    server.stop()


def test_served_traffic_is_logged_and_drift_is_flagged_only_when_it_shifts(monitored, capsys):
    root, bundle, server = monitored
    code, out, err = run_main(capsys, "monitor", "reference", "--bundle", bundle, "--data",
                              root / "train", "--rows", "40")
    assert code == 0 and (bundle / REFERENCE_FILE).is_file(), err
    assert load_reference(bundle / REFERENCE_FILE).features["embeddings"].shape[0] == 40

    # In-distribution traffic: the same generator, other samples.
    logged = root / "log"
    _send(server, list(shifted_roadwork("none", 30, seed=11)))
    _wait_for_rows(logged, 30)
    from roadvision.monitoring.records import read_logged

    rows = read_logged(logged)
    assert {"image", "image_sha256", "metadata", "probability", "label", "model_version",
            "latency_ms", "cache_state"} <= set(rows.columns)
    assert rows["image"].notna().all() and (rows["latency_ms"] > 0).all()
    assert rows["model"].eq("roadwork").all() and rows["probability"].between(0, 1).all()
    lat = json.loads(rows["metadata"].iloc[0])["lat"]
    assert lat == round(lat, 2)  # GPS rounded by default
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric_value(metrics, "roadvision_payload_log_records_total", model="roadwork") >= 30

    code, out, err = run_main(capsys, "monitor", "drift", "--reference", bundle, "--logged",
                              logged, "--permutations", "199", "--fail-on-drift",
                              "--metrics-file", root / "in.prom")
    assert code == 0 and out.startswith("no drift"), out + err
    assert metric_value((root / "in.prom").read_text(), "roadvision_drift_detected") == 0

    # Fog at night (the generator's own haze and night light over the same kind of scenes):
    # the check reads the newest 30 rows, which are the shifted ones.
    _send(server, list(shifted_roadwork("fog_night", 30, seed=12)))
    _wait_for_rows(logged, 60)
    code, out, err = run_main(capsys, "monitor", "drift", "--reference", bundle, "--logged",
                              logged, "--rows", "30", "--permutations", "199", "--fail-on-drift",
                              "--metrics-file", root / "fog.prom", "--report",
                              root / "fog.html")
    assert code == 3 and out.startswith("DRIFT"), out + err
    prom = (root / "fog.prom").read_text()
    assert metric_value(prom, "roadvision_drift_detected", model="roadwork") == 1
    assert metric_value(prom, "roadvision_drift_p_value", test="embedding_mmd") < 0.05
    assert "Input drift detected" in (root / "fog.html").read_text()

    # The KFP step's body is the same check.
    from roadvision.components.monitor_drift import run_monitor_drift

    found = run_monitor_drift(bundle, str(logged), root / "kfp" / "drift.html", rows=30)
    assert found["drifted"] and found["n_current"] == 30


def test_monitor_cli_answers_bad_input_in_one_line(monitored, capsys, tmp_path):
    root, bundle, _ = monitored
    bare = make_bundle("roadwork_tiny", tmp_path / "bare", 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (("--reference", root / "train", "--logged", empty), "pass --bundle"),
        (("--reference", bare, "--logged", empty), "holds no drift reference"),
        (("--reference", bundle, "--logged", empty), "no logged payload files"),
        (("--reference", bundle, "--logged", tmp_path / "nope"), "no such folder"),
        (("--reference", bundle, "--logged", empty, "--alpha", "2"), "--alpha"),
    ]
    for args, message in cases:
        code, _, err = run_main(capsys, "monitor", "drift", *args)
        assert message in one_line_error(code, err)


# -- the figures reach Prometheus and the alert fires -------------------------------------------

def _drift_rule(values: dict | None = None) -> dict:
    from _deploy import find, render_chart, values_file

    prod = values_file("prod")
    prod["metrics"]["prometheusRule"]["drift"] = {"enabled": True, "staleAfterSeconds": 3600}
    return find(render_chart(prod), "PrometheusRule")


def test_drift_alerts_are_off_by_default_and_promtool_accepts_them(tmp_path):
    import shutil
    import subprocess

    from _deploy import find, prometheus_rule_file, render_chart, values_file

    default = find(render_chart(values_file("prod")), "PrometheusRule")
    assert [g["name"] for g in default["spec"]["groups"]] == ["roadvision.serving"]
    rule = _drift_rule()
    assert [g["name"] for g in rule["spec"]["groups"]] == ["roadvision.serving", "roadvision.drift"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/system-deps.sh installs it)")
    (tmp_path / "rules.yaml").write_text(prometheus_rule_file(rule))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_drift_figure_fires_the_alert_in_a_real_prometheus(tmp_path):
    """The textfile the check writes, served as a scrape target (as a node exporter's textfile
    collector or a Pushgateway serves it), fires RoadvisionInputDrift in a real Prometheus."""
    from roadvision.monitoring.prometheus import write_textfile

    rng = np.random.default_rng(0)
    ref = {"embeddings": rng.normal(size=(30, 4)), "stats": rng.normal(size=(30, 3)),
           "probability": rng.random(30), "label": np.zeros(30), "class_shares": {}}
    cur = {**ref, "embeddings": rng.normal(2.0, 1.0, size=(30, 4))}
    result = compare(ref, cur, permutations=99)
    assert result.drifted
    write_textfile(result, "roadwork", tmp_path / "metrics.prom")
    alert = drift_alert_fired(tmp_path / "metrics.prom", tmp_path / "prometheus")
    assert alert["labels"]["model"] == "roadwork"


def drift_alert_fired(textfile: Path, work: Path) -> dict:
    """The firing RoadvisionInputDrift alert of a real Prometheus that scrapes ``textfile``
    (served over HTTP on loopback) with the chart's drift rules; fails if none fires."""
    import functools
    import http.server
    import shutil
    import threading

    from _deploy import prometheus_rule_file
    from test_prometheus import _poll, _start_prometheus, _stop

    from tests.conftest import wait_for_port

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (scripts/system-deps.sh installs it)")
    served = work / "served"
    served.mkdir(parents=True)
    shutil.copyfile(textfile, served / "metrics")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    proc, port = _start_prometheus(work, [f"127.0.0.1:{httpd.server_port}"],
                                   prometheus_rule_file(_drift_rule()))
    try:
        wait_for_port(port, timeout=30)

        def firing():
            body = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5).json()
            return [a for a in body["data"]["alerts"]
                    if a["labels"]["alertname"] == "RoadvisionInputDrift"
                    and a["state"] == "firing"]

        (alert,) = _poll(firing, timeout=60)
        return alert
    finally:
        _stop(proc)
        httpd.shutdown()


def test_the_chart_s_drift_cronjob_is_valid_and_runs_the_check():
    import helm_python
    from _deploy import container_problems, find, render_chart, validate_object, values_file

    prod = values_file("prod")
    assert not [o for o in render_chart(prod) if o["kind"] == "CronJob"]  # off by default
    prod["predictor"]["payloadLog"] = {"enabled": True, "uri": "s3://logs/roadwork"}
    prod["driftCheck"] = {"enabled": True, "reference": "models:/roadwork@champion",
                          "pushgateway": "pushgateway.monitoring:9091"}
    cron = find(render_chart(prod), "CronJob")
    validate_object(cron)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    as_deployment = {"kind": "Deployment", "metadata": cron["metadata"],
                     "spec": {"template": pod}}
    assert container_problems(as_deployment) == []
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["roadvision", "monitor", "drift"]
    assert {"--reference=models:/roadwork@champion", "--logged=s3://logs/roadwork",
            "--pushgateway=pushgateway.monitoring:9091"} <= set(container["args"])
    prod["driftCheck"] = {"enabled": True}
    with pytest.raises(helm_python.HelmError, match="driftCheck.reference is required"):
        render_chart(prod)
