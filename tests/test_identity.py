"""Which model answers: registry name, version and alias next to the bundle hash, over HTTP.

An operator promotes "version 1" in MLflow; the served ``model_version`` is the bundle's weights
hash (it keys the cache). Responses, ``/v2/models/NAME`` metadata and ``roadvision_model_info``
must name the registry version too, and a model served from a folder must say it has none.
The model is registered in a real local MLflow store (SQLite) and served by the real
``python -m roadvision.serving`` on a loopback port.
"""

from __future__ import annotations

import httpx
import pytest
from _serving import ServingServer, b64, jpeg, make_bundle, metric_value, v1_body

from roadvision import registry
from roadvision.models import bundle_version


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    store = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": store, "ROADVISION_HOME": str(root / "home")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        registered = make_bundle("roadwork_tiny", root / "registered", 1)
        version = registry.register_bundle(registered, "roadwork", {"task": "roadwork"},
                                           validate_example=False)
        registry.promote("roadwork", version, reason="identity test")
        folder = make_bundle("roadwork_tiny", root / "folder", 2)
        server = ServingServer(
            args=["--model", "roadwork=models:/roadwork@champion", "--model", f"local={folder}"],
            log_path=root / "server.log", env=env)
        server.start(ready_models=("roadwork", "local"))
        yield {"url": server.url, "version": version, "registered": registered,
               "folder": folder}
        server.stop()


def test_v1_names_the_registry_version_and_alias(served):
    r = httpx.post(f"{served['url']}/v1/models/roadwork:predict", json=v1_body(jpeg(1)),
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {
        "name": "roadwork", "bundle_version": bundle_version(served["registered"]),
        "registry_name": "roadwork", "registry_version": served["version"],
        "registry_alias": "champion", "source": "models:/roadwork@champion"}
    assert body["predictions"][0]["model_version"] == body["model"]["bundle_version"]


def test_v1_from_a_folder_says_it_has_no_registry_identity(served):
    r = httpx.post(f"{served['url']}/v1/models/local:predict", json=v1_body(jpeg(1)), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {
        "name": "local", "bundle_version": bundle_version(served["folder"]),
        "registry_name": None, "registry_version": None, "registry_alias": None,
        "source": str(served["folder"])}


def test_v2_parameters_carry_the_identity(served):
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [b64(jpeg(2))]}]}
    r = httpx.post(f"{served['url']}/v2/models/roadwork/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    response = r.json()
    assert response["model_version"] == bundle_version(served["registered"])
    assert response["parameters"] == {
        "tta": "none", "bundle_version": response["model_version"], "registry_name": "roadwork",
        "registry_version": served["version"], "registry_alias": "champion",
        "source": "models:/roadwork@champion"}
    r = httpx.post(f"{served['url']}/v2/models/local/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["parameters"] == {"tta": "none", "source": str(served["folder"]),
                                      "bundle_version": bundle_version(served["folder"])}


def test_v2_model_metadata_carries_the_identity(served):
    r = httpx.get(f"{served['url']}/v2/models/roadwork", timeout=30)
    assert r.status_code == 200, r.text
    metadata = r.json()
    assert metadata["name"] == "roadwork" and metadata["inputs"][0]["name"] == "image"
    assert metadata["parameters"]["registry_version"] == served["version"]
    assert metadata["parameters"]["registry_alias"] == "champion"
    assert metadata["parameters"]["bundle_version"] == bundle_version(served["registered"])
    local = httpx.get(f"{served['url']}/v2/models/local", timeout=30).json()
    assert local["parameters"]["registry_version"] is None
    assert local["parameters"]["source"] == str(served["folder"])
    missing = httpx.get(f"{served['url']}/v2/models/nope", timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "model_not_found"


def test_model_info_metric_carries_the_registry_labels(served):
    text = httpx.get(f"{served['url']}/metrics", timeout=30).text
    assert metric_value(text, "roadvision_model_info", model="roadwork",
                        version=bundle_version(served["registered"]), registry_name="roadwork",
                        registry_version=served["version"], alias="champion") == 1
    assert metric_value(text, "roadvision_model_info", model="local", registry_name="",
                        registry_version="", alias="") == 1
