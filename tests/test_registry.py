"""roadvision.registry against a real (temporary SQLite) MLflow store and a real tiny bundle."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from _pipeline import _empty_mlflow_db, mlflow_store, tiny_bundle  # noqa: F401 (fixtures)
from PIL import Image

from roadvision import registry
from roadvision.errors import UserError

METRICS = {"headline": 0.42, "accuracy": 0.7,
           "slices": {"weather": {"clear": {"mcc": 0.5, "n": 30}, "dawn/dusk": {"mcc": 0.1}}}}


@pytest.fixture
def bundle(tmp_path):
    return tiny_bundle(tmp_path / "bundle")


def test_register_tags_metrics_alias_and_download(mlflow_store, bundle, tmp_path):  # noqa: F811
    version = registry.register_bundle(bundle, "rv-test", {"dataset.content_hash": "abc123",
                                                           "code_version": "git:deadbeef"},
                                       METRICS)
    assert version == "1"
    info = registry.get_version("models:/rv-test@challenger")
    assert info.version == "1" and "challenger" in info.aliases
    assert info.tags["dataset.content_hash"] == "abc123"
    assert info.tags["task"] == "roadwork"  # read from the bundle's config.json
    assert float(info.tags["metric.headline"]) == pytest.approx(0.42)
    # slice metrics are metrics of the run that logged the model, not a hundred version tags
    assert not any(k.startswith("metric.slices.") for k in info.tags)
    run = registry.RegistryClient().mlflow.get_run(info.run_id)
    assert run.data.metrics["slices.weather.clear.mcc"] == pytest.approx(0.5)
    assert "slices.weather.dawn/dusk.mcc" in run.data.metrics
    assert info.metrics()["headline"] == pytest.approx(0.42)
    assert registry.alias_note(info.tags, "challenger")["by"]  # audit: who
    # the bundle comes back byte-identical, and a second call reuses the copy
    out = registry.download_bundle("models:/rv-test/1", tmp_path / "dl")
    assert (out / "weights.safetensors").read_bytes() == \
        (bundle / "weights.safetensors").read_bytes()
    assert registry.download_bundle("models:/rv-test@challenger", tmp_path / "dl") == out
    # a local bundle folder passes through unchanged
    assert registry.download_bundle(str(bundle)) == bundle


def test_logged_pyfunc_predicts_on_encoded_images(mlflow_store, bundle):  # noqa: F811
    import mlflow

    registry.register_bundle(bundle, "rv-pyfunc", {}, {"headline": 0.1})
    model = mlflow.pyfunc.load_model("models:/rv-pyfunc@challenger")
    buf = io.BytesIO()
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(buf, format="JPEG")
    out = model.predict(pd.DataFrame({"image": [buf.getvalue()], "weather": ["rainy"]}))
    assert list(out.columns) == ["probability", "label"]
    assert 0.0 <= float(out["probability"][0]) <= 1.0
    assert int(out["label"][0]) == int(out["probability"][0] >= 0.5)
    assert model.metadata.signature.inputs.input_names()[0] == "image"


def test_promote_rollback_and_audit(mlflow_store, bundle):  # noqa: F811
    v1 = registry.register_bundle(bundle, "rv-audit", {}, {"headline": 0.3},
                                  validate_example=False)
    v2 = registry.register_bundle(bundle, "rv-audit", {}, {"headline": 0.4},
                                  validate_example=False)
    assert registry.champion("rv-audit") is None
    registry.promote("rv-audit", v1, reason="first", by="alice")
    registry.promote("rv-audit", v2, reason="better", by="bob")
    assert registry.champion("rv-audit").version == v2
    tags = registry.get_version(f"rv-audit/{v2}").tags
    note = registry.alias_note(tags, "champion")
    assert (note["by"], note["reason"], note["previous"]) == ("bob", "better", v1)
    assert tags["roadvision.champion"].endswith(f"v{v2} (was v{v1}) by bob: better")  # readable
    replaced = registry.get_version(f"rv-audit/{v1}").tags["roadvision.champion.replaced_by"]
    assert replaced.startswith(f"v{v2} at ")

    back = registry.rollback("rv-audit", reason="regression in prod", by="carol")
    assert back.version == v1 and registry.champion("rv-audit").version == v1
    assert "rollback from v2: regression in prod" in \
        registry.alias_note(back.tags, "champion")["reason"]
    rolled = registry.get_version(f"rv-audit/{v2}").tags["roadvision.rolled_back"]
    assert rolled.endswith("by carol: regression in prod")
    actions = [(e["action"], e["version"], e["by"]) for e in registry.audit_log("rv-audit")]
    assert ("promote", v2, "bob") in actions and actions[-1] == ("rollback", v1, "carol")
    with pytest.raises(UserError, match="no previous champion"):
        registry.rollback("rv-audit")  # v1 was the first champion


def test_bad_uris_and_missing_models(mlflow_store, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match="bad model URI"):
        registry.parse_model_uri("models:/a/b/c")
    assert registry.parse_model_uri("models:/m@champion") == ("m", "champion", None)
    assert registry.parse_model_uri("m/3") == ("m", None, "3")
    with pytest.raises(UserError, match="no registered model"):
        registry.get_version("nothing-here")
    with pytest.raises(UserError, match="not a model bundle"):
        registry.register_bundle(tmp_path, "x", {})
    with pytest.raises(UserError, match="neither a bundle folder"):
        registry.download_bundle(str(tmp_path / "nope"))


def test_unreachable_tracking_server_names_the_parameter():
    from conftest import free_port

    with pytest.raises(UserError, match="mlflow_tracking_uri: .*unreachable"):
        registry.check_tracking(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_flatten_metrics_drops_non_numbers():
    flat = registry.flatten_metrics({"a": 1, "b": {"c": 2.5, "d": None, "e": [1, 2]},
                                     "f": float("nan"), "g": True, "h": "x"})
    assert flat == {"a": 1.0, "b.c": 2.5}


# -- compare-and-set alias moves, one audit entry per change -----------------------------------
@pytest.fixture
def versions(mlflow_store):  # noqa: F811
    """``rv-cas`` with four versions, made straight in the store (promote needs no weights)."""
    client = _mlflow()
    client.create_registered_model("rv-cas")
    for i in range(4):
        client.create_model_version("rv-cas", source=f"file:///nowhere/{i}")
    return "rv-cas"


def _mlflow():
    """The explicit MlflowClient of the store in effect (this test's), as the registry uses."""
    return registry.RegistryClient().mlflow


def _assert_race_clean(result, calls):
    assert result.errors == [] and result.ok == calls, result.errors
    assert result.lost == 0, result
    assert result.champion is not None and result.consistent, result


def test_concurrent_promotes_from_processes_lose_nothing(mlflow_store, versions,  # noqa: F811
                                                         tmp_path):
    # Before the lock: tracebacks (two inserts of the same audit tag), lost audit entries and a
    # champion that disagreed with the audit log.
    from _registry_race import race

    result = race(mlflow_store, versions, ["1", "2", "3", "4"], workers=3, rounds=4,
                  workdir=tmp_path)
    _assert_race_clean(result, 12)
    log = registry.audit_log(versions)
    assert [e["seq"] for e in log] == list(range(1, 13))  # one entry per call, in one order
    assert all(e["action"] == "promote" for e in log)
    # each entry's "previous" is the entry before it: the changes really were serialised
    assert [e["previous"] for e in log[1:]] == [e["version"] for e in log[:-1]]
    # no lock left behind, and none ever shows as a model
    assert [m["name"] for m in registry.list_models()] == [versions]


def test_audit_is_one_tag_per_entry_and_reads_the_old_list(versions):
    client = _mlflow()
    old = [{"action": "promote", "alias": "champion", "version": "1", "by": "old"}]
    client.set_registered_model_tag(versions, registry.AUDIT_LOG_TAG, json.dumps(old))
    client.set_registered_model_alias(versions, "champion", "1")
    registry.promote(versions, "2", reason="x" * 9000, by="eve")
    tags = client.get_registered_model(versions).tags
    assert tags[registry.AUDIT_LOG_TAG] == json.dumps(old)  # read, never rewritten
    text = tags["roadvision.audit.000001"]
    # one sentence a person reads in MLflow's UI, which the audit log parses back
    assert text.startswith(f"{text.split()[0]} promote @champion v2 (was v1) by eve: xxx")
    assert len(text) <= 5000
    entry = registry.audit_log(versions)[-1]
    assert entry["version"] == "2" and entry["previous"] == "1" and entry["by"] == "eve"
    assert entry["reason"].endswith("[cut]")  # a long reason is cut, the entry is kept
    assert [e["by"] for e in registry.audit_log(versions)] == ["old", "eve"]


def test_a_change_made_outside_roadvision_is_recorded_before_the_next(versions):
    registry.promote(versions, "1", by="ann")
    _mlflow().set_registered_model_alias(versions, "champion", "3")  # e.g. MLflow's UI
    registry.promote(versions, "2", by="ben")
    log = registry.audit_log(versions)
    assert [(e["action"], e["version"], e["previous"]) for e in log] == [
        ("promote", "1", None), ("observed", "3", "1"), ("promote", "2", "3")]
    assert registry.champion(versions).version == log[-1]["version"]


def test_a_gate_refused_version_needs_force_and_the_audit_says_why(versions):
    registry.promote(versions, "1", by="ann")
    registry.tag_version(versions, "2", {"gate.decision": "refuse",
                                         "gate.reason": "slice weather=foggy dropped 0.1"})
    with pytest.raises(UserError, match=r"v2: the gate refused .*foggy.*--force"):
        registry.promote(versions, "2", reason="hotfix")
    assert registry.champion(versions).version == "1"
    assert len(registry.audit_log(versions)) == 1  # a refusal changes nothing
    info = registry.promote(versions, "2", reason="hotfix for the fog bug", force=True,
                            by="ops")
    assert info.version == "2" and registry.champion(versions).version == "2"
    last = registry.audit_log(versions)[-1]
    assert last["forced"] is True and "foggy" in last["gate_reason"]
    assert last["reason"] == "forced over the gate's refusal: hotfix for the fog bug"
    assert registry.alias_note(info.tags, "champion")["reason"] == last["reason"]


def test_rollbacks_under_the_lock_walk_back_the_history(versions):
    for v in ("1", "2", "3"):
        registry.promote(versions, v)
    assert registry.rollback(versions).version == "2"
    assert registry.rollback(versions).version == "1"
    log = registry.audit_log(versions)
    assert [e["action"] for e in log] == ["promote"] * 3 + ["rollback"] * 2
    assert log[-1]["version"] == registry.champion(versions).version == "1"


def test_the_lock_excludes_and_a_dead_holders_lock_goes_stale(versions):
    from roadvision.registry.lock import LOCK_SUFFIX, RegistryBusy, registry_lock

    client = _mlflow()
    with registry_lock(client, versions, "test holder"), \
            pytest.raises(RegistryBusy, match="registry is busy: .*test holder"), \
            registry_lock(client, versions, timeout=0.5):
        pass
    # a holder killed mid-change leaves its lock: a waiter breaks it once it is stale
    client.create_registered_model(versions + LOCK_SUFFIX, tags={"roadvision.lock.token": "t"})
    with registry_lock(client, versions, stale_after=0.3, timeout=10) as lock:
        lock.verify()
    assert registry.list_models()[0]["name"] == versions
    names = {m.name for m in client.search_registered_models()}
    assert names == {versions}  # released: no lock or break marker left


@pytest.mark.parametrize("given,expected", [("3", "3"), (3, "3"), ("v12", "12"), (" 4 ", "4")])
def test_parse_version(given, expected):
    assert registry.parse_version(given) == expected


def test_resolve_model_name_defaults_to_the_task():
    assert registry.resolve_model_name("", "lanes") == "lanes"
    assert registry.resolve_model_name("roads-eu", "lanes") == "roads-eu"


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "", "latest"])
def test_parse_version_refuses_non_numbers(bad):
    with pytest.raises(UserError, match="^version: .* is not a version number"):
        registry.parse_version(bad)


# -- where the default store lives ------------------------------------------------------------
def test_home_is_a_per_user_cache_folder_never_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("ROADVISION_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for cwd in (tmp_path, tmp_path / "user"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        assert registry.roadvision_home() == tmp_path / "user" / ".cache" / "roadvision"
    assert registry.tracking_uri() == \
        f"sqlite:///{tmp_path / 'user' / '.cache' / 'roadvision' / 'mlflow.db'}"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.roadvision_home() == tmp_path / "xdg" / "roadvision"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert registry.roadvision_home() == tmp_path / "user" / ".cache" / "roadvision"
    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "explicit"))
    assert registry.roadvision_home() == tmp_path / "explicit"


def test_a_local_file_store_is_not_given_out_as_a_cluster_uri(mlflow_store, bundle):  # noqa: F811
    registry.register_bundle(bundle, "rv-loc", {}, {"headline": 0.1}, validate_example=False)
    with pytest.raises(UserError, match=r"rv-loc@challenger \(v1\) is in a local file store "
                                        r"\(/.*mlartifacts/.*\): not reachable from a cluster"):
        registry.artifact_location("rv-loc@challenger")


# -- a real tracking server with an S3 artifact proxy (moto) -----------------------------------
@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """``mlflow server --serve-artifacts --artifacts-destination s3://rv-models/mlartifacts`` on
    a loopback port, its artifacts in moto's S3 server; yields (tracking URI, boto3 client)."""
    import subprocess
    import sys
    import time
    import urllib.request

    import boto3
    from conftest import free_port, wait_for_port
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_port, port = free_port(), free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    wait_for_port(s3_port)
    endpoint = f"http://127.0.0.1:{s3_port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="rv-models")
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--serve-artifacts", "--artifacts-destination", "s3://rv-models/mlartifacts"],
        env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": endpoint,
             # no job runner: its ten worker processes only slow a test machine down
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=log,
        stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-2000:]) \
                        from None
                time.sleep(0.3)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
        yield uri, client
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        s3.stop()


def test_tracking_server_uri_and_concurrent_promotes(mlflow_server, bundle, tmp_path):
    uri, s3 = mlflow_server
    for _ in range(2):
        registry.register_bundle(bundle, "rv-srv", {}, {"headline": 0.2}, validate_example=False)
    with pytest.raises(UserError, match=r"artifact proxy \(mlflow-artifacts:/.*--artifacts-dest"):
        registry.artifact_location("rv-srv@challenger")
    location = registry.artifact_location("rv-srv@challenger", "s3://rv-models/mlartifacts/")
    assert location.startswith("s3://rv-models/mlartifacts/") and location.endswith("/artifacts")
    prefix = location[len("s3://rv-models/"):]
    keys = {o["Key"][len(prefix):] for o in
            s3.list_objects_v2(Bucket="rv-models", Prefix=prefix)["Contents"]}
    assert {"/MLmodel", "/artifacts/bundle/config.json"} <= keys  # what the predictor loads
    with pytest.raises(UserError, match="not a URI a cluster can read"):
        registry.artifact_location("rv-srv@challenger", "/srv/mlartifacts")

    from _registry_race import race

    result = race(uri, "rv-srv", ["1", "2"], workers=3, rounds=3, workdir=tmp_path)
    _assert_race_clean(result, 9)
