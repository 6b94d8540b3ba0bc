"""The built images, run the way a cluster runs them (``make image-test``).

One cluster for the module: PostgreSQL -> ``mlflow server --serve-artifacts`` (artifacts in an S3
bucket on moto, ``--allowed-hosts`` naming the in-cluster host), a real ``redis-server``. The
local pipeline (tiny preset) registers ``roadwork`` against that server and promotes it to
``@champion``. Then:

- the serving image starts with the rendered chart's args, environment and security settings:
  uid 10001, read-only root file system, HOME=/tmp with /tmp an emptyDir, in-cluster service
  names; it loads ``models:/roadwork@champion`` through the server's artifact proxy (the S3 host
  does not even resolve inside the pod) and answers v1, v2 (tritonclient, binary JPEG bytes),
  ``/metrics`` and the probes;
- the training image runs the compiled pipeline's ``train`` step (its container command and
  args from pipelines/training_pipeline.yaml, an executor input as KFP's driver writes it)
  against the same server.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from _cluster import MLFLOW_HOST, REDIS_HOST, S3_KEYS, MlflowServer, MotoS3, Postgres
from _pods import SERVE_IMAGE, TRAIN_IMAGE, Pod, emptydir, pod_settings, run
from _serving import jpeg, v1_body
from conftest import FIGURES, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
POD_USER = "10001:10001"


def _figure(line: str) -> None:
    """A measured figure for benchmarks/RESULTS.md `## deploy`: printed, never asserted."""
    FIGURES.append(line)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    postgres, s3 = Postgres(work), MotoS3(work)
    mlflow = MlflowServer(work, postgres, s3)
    redis = RedisServer(port=free_port(), workdir=work)
    started = []
    try:
        for service in (postgres, s3, mlflow, redis):
            service.start()
            started.append(service)
        yield {"mlflow": mlflow, "s3": s3, "redis": redis, "work": work}
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="module")
def champion(cluster, tmp_path_factory):
    """``roadwork`` v1 @champion, registered by the local pipeline through the server."""
    from roadvision.pipelines.compile import DEFAULT_OUT
    from roadvision.pipelines.local import run_local
    from roadvision.pipelines.run_profiles import from_run_profile

    mlflow = cluster["mlflow"]
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "ROADVISION_HOME",
                                            "OMP_NUM_THREADS", "ROADVISION_PIPELINE_RUN_ID")}
    os.environ["ROADVISION_HOME"] = str(tmp_path_factory.mktemp("rvhome"))
    try:
        params = from_run_profile("tiny", task="roadwork", members=1, model_name="roadwork",
                                  experiment="roadvision-image-test",
                                  mlflow_tracking_uri=mlflow.url)
        result = run_local(params, pipeline_file=DEFAULT_OUT,
                           root=tmp_path_factory.mktemp("runs"), echo=False)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    assert result.succeeded, result.summary() + "\n" + result.log_path.read_text()[-3000:]
    assert result.version == "1" and result.promoted is True
    return result


# -- the serving image -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(cluster, champion, tmp_path_factory):
    from _deploy import containers, find, render_chart

    mlflow, redis = cluster["mlflow"], cluster["redis"]
    objects = render_chart({
        "mlflow": {"trackingUri": mlflow.cluster_url},
        "redis": {"enabled": False, "externalUrl": f"redis://{REDIS_HOST}:{redis.port}/0"},
    })
    pod, container = containers(find(objects, "InferenceService"))[0]
    settings = pod_settings(container, pod, secrets=S3_KEYS)
    assert settings["read_only_root"] and settings["run_as_non_root"]
    assert settings["user"] == POD_USER and settings["emptydirs"] == ["/tmp"]
    port = free_port()
    # The chart's port is 8080 inside the pod's own network namespace; here pods share the
    # host's, so the port is a free one.
    args = [a if not a.startswith("--http_port=") else f"--http_port={port}"
            for a in settings["args"]]
    assert f"--http_port={port}" in args
    tmp = emptydir()
    server = Pod("predictor", tmp_path_factory.mktemp("predictor"), SERVE_IMAGE)
    started = time.monotonic()
    server.start(tmp=tmp, user=settings["user"], env=settings["env"], args=args,
                 hosts={MLFLOW_HOST: "127.0.0.1", REDIS_HOST: "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = started + 300  # the chart's startup probe allows 5 minutes
        while True:
            if server.process.poll() is not None:
                pytest.fail(f"the serving pod exited ({server.process.returncode}):\n"
                            f"{server.log_tail()}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after 300 s:\n{server.log_tail()}")
            time.sleep(0.2)
        _figure(f"serve pod cold start to ready ({settings['env']['ROADVISION_MODEL_URI']}"
                         f" via the artifact proxy): {time.monotonic() - started:.1f} s")
        yield {"url": url, "tmp": tmp, "pod": server, "env": settings["env"]}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_serving_image_runs_as_uid_10001_with_the_chart_entrypoint():
    config = run.image_config(SERVE_IMAGE)
    assert config["User"] == POD_USER
    assert config["Entrypoint"] == ["python", "-m", "roadvision.serving"]


def test_predictor_pod_serves_the_champion_under_the_chart_settings(predictor, champion):
    url, env = predictor["url"], predictor["env"]
    assert env["ROADVISION_MODEL_URI"] == "models:/roadwork@champion" and env["HOME"] == "/tmp"
    for probe in ("/v2/health/live", "/v2/health/ready", "/v1/models/roadwork"):
        r = httpx.get(url + probe, timeout=10)
        assert r.status_code == 200, (probe, r.text)
    assert r.json()["ready"] is True

    # NATIX-shaped traffic: 224 px JPEGs, no metadata.
    r = httpx.post(f"{url}/v1/models/roadwork:predict", timeout=60,
                   json=v1_body(jpeg(1, 224, 224)))
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert 0.0 <= pred["probability"] <= 1.0 and pred["label"] in (0, 1)
    # The operator promoted "version 1 @champion": the answer names it, not only a bundle hash.
    identity = r.json()["model"]
    assert (identity["registry_name"], identity["registry_version"],
            identity["registry_alias"]) == ("roadwork", champion.version, "champion"), identity
    assert identity["bundle_version"]

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    image = triton.InferInput("image", [2], "BYTES")
    images = np.array([jpeg(2, 224, 224), jpeg(3, 224, 224)], dtype=object)
    image.set_data_from_numpy(images, binary_data=True)
    result = client.infer("roadwork", [image], outputs=[
        triton.InferRequestedOutput("probability", binary_data=True)])
    prob = result.as_numpy("probability")
    assert prob.shape == (2,) and ((prob >= 0) & (prob <= 1)).all()
    assert result.get_response()["model_name"] == "roadwork"

    metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "roadvision_model_info{" in metrics.text
    info = next(line for line in metrics.text.splitlines()
                if line.startswith("roadvision_model_info{"))
    assert f'registry_version="{champion.version}"' in info and 'alias="champion"' in info, info
    # Everything the predictor wrote (the downloaded bundle included) is in the emptyDir:
    # the root file system is read-only, so nothing else could have been written.
    written = [p for p in Path(predictor["tmp"]).rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in written), sorted(map(str, written))[:20]


# -- the training image ----------------------------------------------------------------------

def _artifact(name: str, schema: str, uri: str) -> dict:
    return {"artifacts": [{"name": name, "uri": uri, "metadata": {},
                           "type": {"schemaTitle": schema, "schemaVersion": "0.0.1"}}]}


def test_compiled_train_step_runs_in_the_training_image(cluster, champion, tmp_path):
    """The ``train`` step's container command and args from the compiled pipeline, with an
    executor input naming its inputs and outputs under the pod's /tmp, as KFP's driver does."""
    from mlflow.tracking import MlflowClient

    from roadvision.pipelines.compile import DEFAULT_OUT
    from roadvision.pipelines.run_profiles import from_run_profile

    mlflow = cluster["mlflow"]
    spec, platform = list(yaml.safe_load_all(Path(DEFAULT_OUT).read_text()))
    container = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    inputs = spec["components"]["comp-train"]["inputDefinitions"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]

    tiny = from_run_profile("tiny", task="roadwork")
    experiment = "roadvision-image-train-step"
    values = {**{k: getattr(tiny, k) for k in inputs["parameters"] if hasattr(tiny, k)},
              "member": 0, "experiment": experiment, "mlflow_tracking_uri": mlflow.cluster_url}
    # inputs with a default the pipeline does not set (the sweep's ``overrides``): KFP's driver
    # passes the default
    values.update({k: d["defaultValue"] for k, d in inputs["parameters"].items()
                   if k not in values and "defaultValue" in d})
    assert set(values) == set(inputs["parameters"]), set(inputs["parameters"]) ^ set(values)

    tmp = emptydir()
    try:
        kfp = tmp / "kfp"
        shutil.copytree(champion.steps["gps_weighting"]["artifacts"]["weighted_dataset"],
                        kfp / "in" / "data")
        (kfp / "out").mkdir()
        for path in (kfp, kfp / "out"):
            os.chown(path, 10001, 10001)
        executor_input = {
            "inputs": {"parameterValues": values, "artifacts": {
                "data": _artifact("data", "system.Dataset", "/tmp/kfp/in/data")}},
            "outputs": {"parameters": {"Output": {"outputFile": "/tmp/kfp/out/Output"}},
                        "artifacts": {
                            "model": _artifact("model", "system.Model", "/tmp/kfp/out/model"),
                            "metrics": _artifact("metrics", "system.Metrics",
                                                 "/tmp/kfp/out/metrics"),
                            "result": _artifact("result", "system.Artifact",
                                                "/tmp/kfp/out/result")},
                        "outputFile": "/tmp/kfp/out/executor_output.json"}}
        args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
        # The env the compiled pipeline asks Kubernetes for: the Secrets' keys and the run id.
        env = {"KFP_RUN_ID": "image-test-run", "HOME": "/tmp"}
        for secret in k8s.get("secretAsEnv", []):
            for key in secret["keyToEnv"]:
                if key["secretKey"] in S3_KEYS:
                    env[key["envVar"]] = S3_KEYS[key["secretKey"]]
                else:
                    assert secret.get("optional"), f"no value for Secret key {key}"
        step = Pod("train-step", tmp_path, TRAIN_IMAGE)
        started = time.monotonic()
        step.start(tmp=tmp, user=POD_USER, env=env, command=container["command"], args=args,
                   hosts={MLFLOW_HOST: "127.0.0.1"})
        try:
            rc = step.wait(timeout=900)
        finally:
            step.stop()  # unmounts the image
        _figure(f"train step in the training image: {time.monotonic() - started:.1f} s")
        assert rc == 0, step.log_tail()
        output = json.loads((kfp / "out" / "executor_output.json").read_text())
        assert -1.0 <= float(output["parameterValues"]["Output"]) <= 1.0  # an MCC
        assert (kfp / "out" / "model" / "config.json").exists(), sorted(
            p.name for p in (kfp / "out" / "model").iterdir())
        result = json.loads((kfp / "out" / "result").read_text())
        assert result["task"] == "train-member-0" and result["status"] == "succeeded"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    client = MlflowClient(tracking_uri=mlflow.url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    member = [r for r in runs if r.info.run_name == "train-member-0"]
    assert member and "best_metric" in member[0].data.metrics, [r.info.run_name for r in runs]
