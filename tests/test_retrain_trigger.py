"""Retraining: the decision on a drift result, ``monitor drift --retrain`` starting the training
pipeline with kfp.local, and the schedule (a KFP recurring run), checked offline: no KFP server
exists here, so what it would upload is checked instead. Scores are on synthetic data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _cli import one_line_error, run_main
from _pipeline import _empty_mlflow_db, mlflow_store  # noqa: F401 (fixtures)
from conftest import free_port

from roadvision.errors import UserError
from roadvision.monitoring.drift import DriftResult
from roadvision.monitoring.drift import TestResult as DriftTest
from roadvision.monitoring.trigger import RetrainPolicy, decide_retrain


def _result(drifted: bool, p: float, n: int = 100, prediction_drift: bool = False):
    return DriftResult(drifted=drifted, alpha=0.05, n_reference=100, n_current=n,
                       input=DriftTest("embedding_mmd", 0.1, p, drifted),
                       prediction=[DriftTest("positive_rate", 0.2, 0.01 if prediction_drift
                                              else 0.6, prediction_drift)])


def test_the_decision_follows_the_policy():
    assert decide_retrain(_result(True, 0.01)).retrain
    assert "embedding_mmd p 0.01" in decide_retrain(_result(True, 0.01)).reason
    assert not decide_retrain(_result(False, 0.4)).retrain
    few = decide_retrain(_result(True, 0.01, n=20))
    assert not few.retrain and "20 logged rows" in few.reason
    strict = decide_retrain(_result(True, 0.01), RetrainPolicy(max_p_value=0.005))
    assert not strict.retrain and "above the retraining threshold" in strict.reason
    assert not decide_retrain(_result(False, 0.4, prediction_drift=True)).retrain
    on_pred = decide_retrain(_result(False, 0.4, prediction_drift=True),
                             RetrainPolicy(on_prediction_drift=True))
    assert on_pred.retrain and "positive_rate" in on_pred.reason
    for bad in ({"min_rows": 1}, {"max_p_value": 1.5}):
        with pytest.raises(UserError):
            RetrainPolicy(**bad)


def _write_pool(folder: Path, shift: str, n: int, seed: int) -> Path:
    """A payload log as the predictor writes it (images and metadata logged, no prediction)."""
    from roadvision.data.images import encode_jpeg
    from roadvision.monitoring.records import COLUMNS, partition_path
    from roadvision.monitoring.shifted import shifted_roadwork

    ts = time.time()
    rows = []
    for i, (image, meta) in enumerate(shifted_roadwork(shift, n, seed=seed)):
        data = encode_jpeg(image, 90)
        rows.append({**dict.fromkeys(COLUMNS), "ts": ts + i, "request_id": f"r{i}",
                     "instance": 0, "model": "roadwork", "model_version": None,
                     "task": "roadwork", "protocol": "v1", "tta": "none",
                     "image_sha256": f"{i:064x}", "image_bytes": len(data), "image": data,
                     "metadata": json.dumps(meta), "cached": False, "cache_state": "miss",
                     "latency_ms": 5.0})
    path = folder / partition_path("roadwork", ts, f"batch-{shift}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(path)
    return folder


@pytest.fixture(scope="module")
def referenced(tmp_path_factory):
    """A tiny bundle holding a drift reference of generated training data."""
    from _serving import make_bundle

    from roadvision.data.synth import generate
    from roadvision.monitoring.reference import build_reference, save_reference

    root = tmp_path_factory.mktemp("retrain")
    bundle = make_bundle("roadwork_tiny", root / "bundle", 0)
    generate("roadwork", 60, 0, root / "train", size=(96, 64))
    save_reference(build_reference(bundle, root / "train", n=60), bundle)
    return root, bundle


def test_drift_with_retrain_starts_the_training_pipeline_locally(referenced, capsys, tmp_path,
                                                                 mlflow_store):  # noqa: F811
    """Fog at night -> drift -> a kfp.local run of the training pipeline with the run profile
    and data asked for. Its data folder is empty on purpose, so the run stops at ingest (a full
    tiny training run costs minutes on 2 shared cores): the run record and the MLflow parent
    run that kfp.local's run opened say what was submitted."""
    from mlflow import MlflowClient

    _, bundle = referenced
    empty = tmp_path / "retrain-data"
    empty.mkdir()
    quiet = _write_pool(tmp_path / "quiet", "none", 40, seed=11)
    code, out, err = run_main(capsys, "monitor", "drift", "--reference", bundle, "--logged",
                              quiet, "--permutations", "199", "--retrain", "--retrain-data",
                              empty, "--retrain-min-rows", "30")
    assert code == 0 and out.startswith("no drift"), out + err
    assert "retraining: not started (no drift" in out
    assert not (Path(mlflow_store.removeprefix("sqlite:///")).parent.parent / "home" /
                "pipeline_runs").exists()

    shifted = _write_pool(tmp_path / "shifted", "fog_night", 40, seed=12)
    code, out, err = run_main(capsys, "monitor", "drift", "--reference", bundle, "--logged",
                              shifted, "--permutations", "199", "--retrain", "--retrain-data",
                              empty, "--retrain-min-rows", "30", "--model", "roadwork",
                              "--fail-on-drift")
    assert out.startswith("DRIFT"), out + err
    assert "retraining: input drift (embedding_mmd p" in out
    assert "training profile tiny" in out and str(empty) in out
    assert code == 1 and "pipeline FAILED" in out and "ingest" in out  # the empty data set
    runs = list((tmp_path / "home" / "pipeline_runs").glob("run-*.json"))
    assert len(runs) == 1
    record = json.loads(runs[0].read_text())
    assert record["data_uri"] == str(empty) and record["task"] == "roadwork"
    assert record["model_name"] == "roadwork"
    parent = MlflowClient(tracking_uri=mlflow_store).search_runs(
        [MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name("roadvision")
         .experiment_id], filter_string="tags.`roadvision.kind` = 'pipeline'")
    assert len(parent) == 1
    assert parent[0].data.params["training_profile"] == "tiny"
    assert parent[0].data.params["data_uri"] == str(empty)


def test_retrain_options_fail_before_the_check(referenced, capsys, tmp_path):
    _, bundle = referenced
    pool = _write_pool(tmp_path / "pool", "none", 4, seed=1)
    host = f"http://127.0.0.1:{free_port()}"
    cases = (
        (("--retrain", "--kfp-host", host), "unreachable"),
        (("--retrain", "--retrain-data", tmp_path / "nope"), "does not exist"),
        (("--retrain", "--retrain-data", "synth://lanes?n=10"), "generates 'lanes' data"),
        (("--retrain", "--retrain-min-rows", "1"), "min_rows"),
        (("--retrain", "--retrain-profile", "huge"), "huge"),
        (("--kfp-host", host), "add --retrain"),
    )
    for extra, message in cases:
        code, _, err = run_main(capsys, "monitor", "drift", "--reference", bundle, "--logged",
                                pool, "--permutations", "19", *extra)
        assert message in one_line_error(code, err), (extra, err)


def test_cron_expressions_are_checked_and_given_seconds():
    from roadvision.pipelines.submit import check_cron

    assert check_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert check_cron("*/15 1-5 * * 1,3") == "0 */15 1-5 * * 1,3"
    assert check_cron("30 0 3 ? * 1") == "30 0 3 ? * 1"
    for bad, message in (("0 3 * *", "expected 5 fields"), ("0 24 * * 1", "hour 24"),
                         ("61 3 * * 1", "minute 61"), ("0 3 * * 7", "day of week 7"),
                         ("0 3 * * mon", "'mon'"), ("*/0 3 * * 1", "'*/0'"),
                         ("0 3 * ? 1", "'?' only")):
        with pytest.raises(UserError, match=message):
            check_cron(bad)


def test_the_schedule_uploads_the_training_package_with_valid_arguments(capsys):
    from roadvision.pipelines.run_profiles import from_run_profile
    from roadvision.pipelines.submit import recurring_run

    job = recurring_run(from_run_profile("full", "roadwork", data_uri="s3://data/roadwork"),
                        "0 3 * * 1", job_name="weekly")
    assert job.cron == "0 0 3 * * 1" and job.max_concurrency == 1 and job.no_catchup
    spec = next(yaml.safe_load_all(job.pipeline_file.read_text()))
    assert spec["pipelineInfo"]["name"] == "roadvision-training"
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(job.arguments) == set(inputs)  # every argument is a pipeline parameter, all set
    assert job.arguments["data_uri"] == "s3://data/roadwork"

    code, out, err = run_main(capsys, "pipeline", "schedule", "--cron", "0 3 * * 1",
                              "--dry-run", "--set", "epochs=5")
    assert code == 0, err
    assert "cron '0 0 3 * * 1'" in out and "epochs = 5" in out
    host = f"http://127.0.0.1:{free_port()}"
    for args, message in ((["--cron", "0 3 * * 1"], "--kfp-host"),
                          (["--cron", "0 3 * *", "--dry-run"], "expected 5 fields"),
                          (["--cron", "0 3 * * 1", "--kfp-host", host], "unreachable"),
                          (["--cron", "0 3 * * 1", "--dry-run", "--pipeline-file", "nope.yaml"],
                           "does not exist"),
                          (["--cron", "0 3 * * 1", "--dry-run", "--set", "epochs=0"], "epochs")):
        code, _, err = run_main(capsys, "pipeline", "schedule", *args)
        assert message in one_line_error(code, err), (args, err)


def test_the_chart_s_drift_cronjob_can_retrain_through_kfp():
    import helm_python
    from _deploy import find, render_chart, validate_object, values_file

    prod = values_file("prod")
    prod["predictor"]["payloadLog"] = {"enabled": True, "uri": "s3://logs/roadwork"}
    prod["driftCheck"] = {"enabled": True, "reference": "models:/roadwork@champion"}
    (container,) = find(render_chart(prod), "CronJob")["spec"]["jobTemplate"]["spec"][
        "template"]["spec"]["containers"]
    assert not [a for a in container["args"] if "retrain" in a or "kfp" in a]  # off by default
    serving_image = container["image"]
    prod["driftCheck"]["retrain"] = {"enabled": True, "kfpHost": "http://ml-pipeline:8888",
                                     "data": "s3://data/roadwork",
                                     "image": "ghcr.io/roadvision/roadvision-train:0.1.0"}
    cron = find(render_chart(prod), "CronJob")
    validate_object(cron)
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"--retrain", "--kfp-host=http://ml-pipeline:8888", "--retrain-profile=full",
            "--retrain-data=s3://data/roadwork"} <= set(container["args"])
    assert container["image"] == "ghcr.io/roadvision/roadvision-train:0.1.0" != serving_image
    prod["driftCheck"]["retrain"] = {"enabled": True}
    with pytest.raises(helm_python.HelmError, match="driftCheck.retrain.kfpHost is required"):
        render_chart(prod)
    prod["driftCheck"]["retrain"] = {"enabled": True, "kfpHost": "x", "runProfile": "huge"}
    with pytest.raises(helm_python.HelmError):
        render_chart(prod)
