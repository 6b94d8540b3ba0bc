"""check_params on a cluster: a tracking store every pod shares, or a clear refusal.

On a cluster each step is its own pod, so the compiled default ``mlflow_tracking_uri=""``
(SQLite in the pod) would give register and gate different, empty registries. The step tells a
cluster pod from a kfp.local subprocess by ``KFP_RUN_ID``, which the compiled pipeline sets on
every task from the pod's label (checked against the compiled YAML below).
"""

from __future__ import annotations

import pytest
import yaml

from roadvision.components.check_params import on_cluster, run_check_params
from roadvision.components.run_params import RunParams
from roadvision.errors import UserError


@pytest.fixture()
def params(tmp_path, monkeypatch):
    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
    for name in ("MLFLOW_TRACKING_URI", "KFP_RUN_ID", "ROADVISION_PIPELINE_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return RunParams(data_uri="synth://roadwork?n=8&seed=0", members=2).to_dict()


@pytest.mark.parametrize("uri", ["", "sqlite:///mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns",
                                 "mlruns"])
def test_a_cluster_run_refuses_a_tracking_store_inside_its_pod(params, monkeypatch, uri):
    monkeypatch.setenv("KFP_RUN_ID", "run-1")
    with pytest.raises(UserError, match=r"^mlflow_tracking_uri: .*on a cluster.*tracking server"):
        run_check_params({**params, "mlflow_tracking_uri": uri}, check_mlflow=False)


def test_the_refusal_says_what_the_empty_default_fell_back_to(params, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "run-1")
    with pytest.raises(UserError, match=r"empty, which falls back to 'sqlite:///"):
        run_check_params(params, check_mlflow=False)


def test_a_cluster_run_takes_a_server_from_the_parameter_or_the_image(params, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "run-1")
    server = {**params, "mlflow_tracking_uri": "http://mlflow.mlflow.svc.cluster.local:5000"}
    assert run_check_params(server, check_mlflow=False) == [0, 1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc.cluster.local:5000")
    assert run_check_params(params, check_mlflow=False) == [0, 1]  # "" -> the image's env
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/in-the-pod.db")
    with pytest.raises(UserError, match="sqlite:////tmp/in-the-pod.db' on a cluster"):
        run_check_params(params, check_mlflow=False)


def test_local_runs_keep_the_sqlite_default(params, monkeypatch, tmp_path):
    assert run_check_params(params) == [0, 1]  # no KFP_RUN_ID: a kfp.local subprocess
    assert (tmp_path / "home").is_dir()  # the SQLite store's folder, probed and created
    # `roadvision pipeline run --local` inside a pod (a notebook server) is a local run too.
    monkeypatch.setenv("KFP_RUN_ID", "inherited")
    monkeypatch.setenv("ROADVISION_PIPELINE_RUN_ID", "abc")
    assert not on_cluster()
    assert run_check_params(params) == [0, 1]


def test_other_bad_parameters_are_reported_before_the_tracking_store(params, monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", "run-1")
    with pytest.raises(UserError, match="^epochs:"):
        run_check_params({**params, "epochs": 0})


def test_the_compiled_pipeline_gives_every_task_kfp_run_id():
    """on_cluster() relies on this: the Kubernetes platform spec maps the pod label to
    KFP_RUN_ID for every executor, check-params included."""
    from importlib.resources import files

    docs = list(yaml.safe_load_all(
        files("roadvision.pipelines").joinpath("training_pipeline.yaml").read_text()))
    platform = next(d for d in docs if "platforms" in d)["platforms"]["kubernetes"]
    executors = platform["deploymentSpec"]["executors"]
    assert "exec-check-params" in executors
    for name, spec in executors.items():
        env = {e["name"]: e["fieldPath"] for e in spec.get("fieldPathAsEnv", [])}
        assert env.get("KFP_RUN_ID") == "metadata.labels['pipeline/runid']", name


@pytest.mark.parametrize("changes,message", [
    ({"pseudo_label_pool": "synth://lanes?n=40"}, "generates 'lanes' data"),
    ({"pseudo_label_pool": "synth://roadwork?n=2"}, "out of range"),
    ({"pseudo_label_pool": "ftp://pool"}, "unsupported scheme"),
    ({"pseudo_label_pool": "s3://"}, "names no bucket"),
    ({"pseudo_label_pool": "/definitely/not/a/pool"}, "does not exist"),
    ({"pseudo_label_rounds": 0}, "out of range"),
])
def test_pseudo_label_parameters_fail_early_naming_the_parameter(params, changes, message):
    name = next(iter(changes))
    with pytest.raises(UserError, match=f"^{name}: .*{message}"):
        run_check_params({**params, **changes}, check_mlflow=False)


def test_the_pseudo_label_branch_is_off_by_default(params, tmp_path):
    assert RunParams().pseudo_label_pool == "" and RunParams().pseudo_label_rounds == 2
    pool = tmp_path / "pool"
    pool.mkdir()
    for uri in ("", str(pool), "s3://bucket/payloads", "synth://roadwork?n=8&size=tiny"):
        assert run_check_params({**params, "pseudo_label_pool": uri},
                                check_mlflow=False) == [0, 1]


def test_the_lane_bias_objective_reaches_every_step_that_calibrates(params):
    """The pipeline parameter is validated first and then bound to train, distill and
    pseudo_label, the three steps that calibrate a model (compiled DAG, not a unit call)."""
    from importlib.resources import files

    with pytest.raises(UserError, match="^lane_bias_objective: 'area' is not one of"):
        run_check_params({**params, "lane_bias_objective": "area"}, check_mlflow=False)
    spec = next(yaml.safe_load_all(
        files("roadvision.pipelines").joinpath("training_pipeline.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["lane_bias_objective"][
        "defaultValue"] == "iou"

    def bound(tasks):
        for name, task in tasks.items():
            inputs = task.get("inputs", {}).get("parameters", {})
            if "lane_bias_objective" in inputs:
                yield name, inputs["lane_bias_objective"]

    found = {}
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values()
                                        if "dag" in c]:
        found.update(bound(dag["tasks"]))
    assert {"check-params", "train", "distill", "pseudo-label"} <= set(found)
    for name, value in found.items():  # from the run's parameter, never a constant
        assert "componentInputParameter" in value, name
