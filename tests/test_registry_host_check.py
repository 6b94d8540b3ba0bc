"""A real `mlflow server --allowed-hosts` that refuses our Host header: found at start, not later.

MLflow 3.17 exempts ``/health`` from its Host-header check, so a server that refuses the host a
cluster uses for it answers ``/health`` with 200 and every registry call with
``403 Invalid Host header``. The server here allows ``localhost:*`` only: ``http://localhost:P``
is accepted and ``http://127.0.0.1:P`` (the same server) is refused, as an in-cluster Service
name would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port

from roadvision.components.check_params import run_check_params
from roadvision.components.run_params import RunParams
from roadvision.errors import UserError
from roadvision.registry import check_tracking


@pytest.fixture(scope="module")
def mlflow_port(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-hosts")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--allowed-hosts", "localhost:*"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "server.log").read_text()[-2000:]) from None
                time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_health_passes_but_the_registry_call_reports_the_allowed_hosts_fix(mlflow_port):
    refused = f"http://127.0.0.1:{mlflow_port}"
    with urllib.request.urlopen(f"{refused}/health", timeout=5) as response:
        assert response.status == 200  # what the startup check used to rely on
    with pytest.raises(UserError) as caught:
        check_tracking(refused, parameter="MLFLOW_TRACKING_URI")
    message = str(caught.value)
    assert message.startswith("MLFLOW_TRACKING_URI: MLflow at http://127.0.0.1:")
    assert "403 Invalid Host header" in message
    assert f"mlflow server --allowed-hosts 127.0.0.1:{mlflow_port}" in message


def test_an_allowed_host_passes(mlflow_port):
    allowed = f"http://localhost:{mlflow_port}"
    assert check_tracking(allowed) == allowed


def test_the_predictor_stops_at_start_with_one_line(mlflow_port, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
           "ROADVISION_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "roadvision.serving", "--model", "models:/roadwork@champion",
         "--http_port", str(free_port())],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: MLFLOW_TRACKING_URI: MLflow at http://127.0.0.1:")
    assert f"--allowed-hosts 127.0.0.1:{mlflow_port}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_check_params_on_a_cluster_stops_before_training(mlflow_port, tmp_path, monkeypatch):
    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KFP_RUN_ID", "run-1")
    monkeypatch.delenv("ROADVISION_PIPELINE_RUN_ID", raising=False)
    params = RunParams(data_uri="synth://roadwork?n=8&seed=0",
                       mlflow_tracking_uri=f"http://127.0.0.1:{mlflow_port}").to_dict()
    with pytest.raises(UserError, match=r"^mlflow_tracking_uri: .*--allowed-hosts 127\.0\.0\.1"):
        run_check_params(params)
    params["mlflow_tracking_uri"] = f"http://localhost:{mlflow_port}"
    assert run_check_params(params) == [0, 1, 2]
