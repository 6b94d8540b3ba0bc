"""The MLOps loop end to end (issue 15), through real servers on loopback: a real SQLite MLflow
store, a real ``redis-server``, the real predictor (``python -m roadvision.serving``).

serve the champion -> in-distribution traffic (no drift) -> fog-at-night traffic (drift, its
Prometheus figure, the chart's alert firing in a real Prometheus) -> one pseudo-label round on
the logged pool -> the challenger registered -> the predictor, reloaded, serves it a canary
share -> ``roadvision model canary --apply`` promotes it or rolls it back, with the audit
entry. Data, models and scores are synthetic (the generator's scenes, tiny models).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _canary import store_env
from _pipeline import _empty_mlflow_db  # noqa: F401 (fixture)
from _serving import ServingServer, b64, metric_value
from test_drift import drift_alert_fired

from roadvision.data.images import encode_jpeg
from roadvision.monitoring.shifted import shifted_roadwork
from tests._cli import run_main
from tests.conftest import RedisServer, free_port

NAME = "roadwork"
PERCENT = 50


def _send(server: ServingServer, pairs: list[tuple[np.ndarray, dict]], per_request: int = 5
          ) -> list[httpx.Response]:
    answers = []
    for start in range(0, len(pairs), per_request):
        body = {"instances": [{"image_b64": b64(encode_jpeg(image, 90)), "metadata": meta}
                              for image, meta in pairs[start:start + per_request]]}
        r = httpx.post(f"{server.url}/v1/models/{NAME}:predict", json=body, timeout=120)
        assert r.status_code == 200, r.text
        answers.append(r)
    return answers


def _logged_rows(folder: Path, n: int, timeout: float = 30.0):
    from roadvision.monitoring.records import read_logged

    deadline = time.monotonic() + timeout
    while True:
        rows = read_logged(folder) if any(folder.rglob("*.parquet")) else None
        if rows is not None and len(rows) >= n:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {n} logged rows in {folder} after {timeout}s")
        time.sleep(0.2)


def _train_champion(root: Path) -> tuple[Path, Path]:
    """A tiny model trained a few steps on the generator's own scenes (split by city)."""
    import torch

    from roadvision.data.split import split_dataset
    from roadvision.data.synth import generate
    from roadvision.training import TrainConfig, train

    generate("roadwork", 60, 0, root / "raw", size=(96, 64))
    labelled = root / "labelled"
    split_dataset(root / "raw", labelled, min_distance_m=0, val_fraction=0.2, test_fraction=0.2)
    torch.manual_seed(0)
    cfg = TrainConfig.for_profile("tiny", "roadwork", epochs=3, max_steps_per_epoch=5,
                                  batch_size=8, patience=0)
    return train(labelled, root / "champion", cfg).bundle_dir, labelled


def _register(bundle: Path, labelled: Path, root: Path, tag: str) -> str:
    """Through the pipeline's own register step (which stores the drift reference)."""
    from roadvision.components._base import write_json
    from roadvision.components.register import run_register
    from roadvision.evaluation import evaluate

    metrics = root / f"{tag}-metrics.json"
    write_json(metrics, evaluate(bundle, labelled, split="test"))
    return run_register(bundle, metrics, labelled, task="roadwork", model_name=NAME,
                        drift_reference_rows=36)["version"]


@pytest.mark.slow
def test_the_loop_from_served_traffic_to_a_judged_challenger(tmp_path, capsys,
                                                             _empty_mlflow_db):  # noqa: F811
    from roadvision import registry
    from roadvision.monitoring.records import read_logged
    from roadvision.training import PseudoLabelConfig, TrainConfig, pseudo_label_rounds
    from roadvision.training.pseudo_pool import pool_from_frame

    root = tmp_path
    shutil.copyfile(_empty_mlflow_db, root / "mlflow.db")
    env = store_env(root)
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    server = None
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # a step called by hand, not inside a pipeline run (an earlier test's may linger)
        for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "ROADVISION_PIPELINE_RUN_ID",
                    "KFP_RUN_ID"):
            mp.delenv(key, raising=False)
        try:
            # -- the champion, registered with its drift reference, served with a canary slot
            champion, labelled = _train_champion(root)
            v1 = _register(champion, labelled, root, "champion")
            registry.promote(NAME, v1, reason="loop test: first champion", by="loop-test")
            log = root / "payloads"
            server = ServingServer(
                args=["--model", f"{NAME}=models:/{NAME}@champion", "--redis", redis.url,
                      "--canary-percent", str(PERCENT), "--allow_model_control",
                      "--payload_log_uri", str(log), "--payload_log_sample_rate", "1",
                      "--payload_log_flush_s", "0.2", "--forward_workers", "0"],
                log_path=root / "server.log", env=env)
            server.start(timeout=300, ready_models=(NAME,))

            # -- in-distribution traffic: no drift
            _send(server, list(shifted_roadwork("none", 30, seed=11)))
            _logged_rows(log, 30)
            reference = f"models:/{NAME}@champion"
            code, out, err = run_main(capsys, "monitor", "drift", "--reference", reference,
                                      "--logged", log, "--permutations", "199",
                                      "--fail-on-drift", "--metrics-file", root / "in.prom")
            assert code == 0 and out.startswith("no drift"), out + err

            # -- fog at night: drift, its figure, and the alert's condition on that figure
            _send(server, list(shifted_roadwork("fog_night", 30, seed=12)))
            _logged_rows(log, 60)
            code, out, err = run_main(capsys, "monitor", "drift", "--reference", reference,
                                      "--logged", log, "--rows", "30", "--permutations", "199",
                                      "--fail-on-drift", "--metrics-file", root / "fog.prom")
            assert code == 3 and out.startswith("DRIFT"), out + err
            prom = (root / "fog.prom").read_text()
            assert metric_value(prom, "roadvision_drift_detected", model=NAME) == 1
            alert = drift_alert_fired(root / "fog.prom", root / "prometheus")
            assert alert["labels"]["model"] == NAME

            # -- one pseudo-label round on the logged pool (fog and night included)
            pool = pool_from_frame(read_logged(log))
            assert len(pool) == 60
            config = PseudoLabelConfig(
                rounds=1, thresholds=[0.52], balance_ratio=3.0,
                train=TrainConfig.for_profile("tiny", "roadwork", epochs=1,
                                              max_steps_per_epoch=4, batch_size=8,
                                              patience=0))
            (report,) = pseudo_label_rounds(champion, labelled, pool, config, root / "pseudo")
            assert report.trained and report.kept > 0, report.note
            assert report.test_after["headline"] is not None  # scored on the frozen test

            # -- the challenger, registered, then served a canary share after a reload
            v2 = _register(Path(report.bundle), labelled, root, "challenger")
            assert v2 != v1  # the register step put @challenger on it
            r = httpx.post(f"{server.url}/v2/repository/models/{NAME}/load", timeout=300)
            assert r.status_code == 200, r.text
            answers = _send(server, list(shifted_roadwork("none", 40, seed=21)), per_request=1)
            arms = {a.headers["x-roadvision-arm"] for a in answers}
            versions = {a.json()["model"]["registry_version"] for a in answers}
            assert arms == {"champion", "challenger"} and versions == {v1, v2}

            # -- judged on the live figures, and the registry follows the decision
            code, out, err = run_main(capsys, "model", "canary", NAME, "--metrics-url",
                                      f"{server.url}/metrics", "--logged", log,
                                      "--min-requests", "10", "--max-latency-ratio", "20",
                                      "--apply")
            assert code == 0, out + err
            decision = re.search(r"decision: (\w+)", out)
            assert decision and decision.group(1) in ("promote", "rollback"), out
            entry = registry.audit_log(NAME)[-1]
            if decision.group(1) == "promote":
                assert registry.champion(NAME).version == v2
                assert entry["action"] == "promote" and entry["version"] == v2
            else:
                assert registry.champion(NAME).version == v1
                assert entry["action"] == "canary_rollback"
            assert "requests" in entry["reason"]  # the figures it was judged on
        finally:
            if server is not None:
                server.stop()
            redis.stop()
