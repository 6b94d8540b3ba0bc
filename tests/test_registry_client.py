"""The registry's client is explicit: two stores in one process, and no process-wide URI changes.

Two SQLite stores in temporary folders, each behind its own ``RegistryClient``: what one
registers, the other does not see; lookups, alias moves, the audit and downloads of one store
never touch MLflow's process-wide tracking or registry URI (which points at a third path that
must never be created).
"""

from __future__ import annotations

import shutil

import mlflow
import pytest
from _pipeline import _empty_mlflow_db, tiny_bundle  # noqa: F401 (fixture)

from roadvision import registry
from roadvision.registry import RegistryClient, aliases, audit, download, publish, versions


@pytest.fixture
def stores(tmp_path, monkeypatch, _empty_mlflow_db):  # noqa: F811
    """Two fresh stores; the environment's store (``MLFLOW_TRACKING_URI``) is the second."""
    uris = []
    for name in ("one", "two"):
        db = tmp_path / name / "mlflow.db"
        db.parent.mkdir()
        shutil.copyfile(_empty_mlflow_db, db)
        uris.append(f"sqlite:///{db}")
    mlflow.set_tracking_uri(None)  # the fluent API follows the environment, as in a fresh process
    mlflow.set_registry_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uris[1])
    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    yield RegistryClient(uris[0]), RegistryClient(uris[1])
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_each_client_builds_one_mlflow_client_for_its_own_store(stores):
    one, two = stores
    assert one.uri != two.uri
    assert (one.mlflow.tracking_uri, two.mlflow.tracking_uri) == (one.uri, two.uri)
    assert RegistryClient().uri == two.uri  # None = the store in effect (the environment's)


def test_what_one_store_registers_the_other_does_not_see(stores, tmp_path):
    one, two = stores
    bundle = tiny_bundle(tmp_path / "bundle")
    fluent = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    version = publish.register_bundle(one, bundle, "rv-two-stores", {"source": "store one"},
                                      validate_example=False)
    # publishing uses MLflow's fluent API on store one for that call only, then puts it back
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == fluent == (two.uri, two.uri)
    assert versions.get_version(one, "rv-two-stores@challenger").version == version == "1"
    assert versions.find_version(two, "rv-two-stores") is None
    assert versions.list_models(two) == []
    assert [m["name"] for m in versions.list_models(one)] == ["rv-two-stores"]
    # the module functions work on the store in effect: the environment's, store two
    assert registry.find_version("rv-two-stores") is None
    assert registry.list_models() == []

    # the same name and version number in store two is another model: lookups and the local
    # download cache keep them apart
    other = tiny_bundle(tmp_path / "other", task="lanes")
    assert registry.register_bundle(other, "rv-two-stores", {}, validate_example=False) == "1"
    assert versions.get_version(one, "rv-two-stores/1").tags["task"] == "roadwork"
    assert versions.get_version(two, "rv-two-stores/1").tags["task"] == "lanes"
    first = download.download_bundle(one, "models:/rv-two-stores/1")
    second = download.download_bundle(two, "models:/rv-two-stores/1")
    assert first != second
    assert (first / "weights.safetensors").read_bytes() == \
        (bundle / "weights.safetensors").read_bytes()
    assert (second / "weights.safetensors").read_bytes() == \
        (other / "weights.safetensors").read_bytes()


def test_reads_and_alias_moves_leave_the_process_wide_uri_alone(stores, tmp_path):
    one, _ = stores
    one.mlflow.create_registered_model("rv-explicit")
    for i in range(2):
        one.mlflow.create_model_version("rv-explicit", source=f"file:///nowhere/{i}")
    elsewhere = tmp_path / "elsewhere" / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{elsewhere}")
    mlflow.set_registry_uri(f"sqlite:///{elsewhere}")

    aliases.promote(one, "rv-explicit", "1", reason="first", by="ann")
    aliases.promote(one, "rv-explicit", "2", reason="second", by="ben")
    assert aliases.rollback(one, "rv-explicit", by="cy").version == "1"
    assert versions.champion(one, "rv-explicit").version == "1"
    assert [e["by"] for e in audit.audit_log(one, "rv-explicit")] == ["ann", "ben", "cy"]
    assert audit.champion_history(one, "rv-explicit") == ["1"]
    assert [v.version for v in versions.list_versions(one, "rv-explicit")] == ["2", "1"]

    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == f"sqlite:///{elsewhere}"
    assert not elsewhere.parent.exists()  # nothing was ever written there


def test_a_registration_leaves_no_experiment_behind_for_the_next_step(stores, tmp_path):
    """Registering logs a run through the fluent API; the experiment it used must not stay in
    the environment, where the process's next step run (on a fresh store, whose experiment 1
    does not exist) would pick it up."""
    import os

    from roadvision.components._base import step_run

    one, _ = stores
    publish.register_bundle(one, tiny_bundle(tmp_path / "bundle"), "rv-no-leak", {},
                            validate_example=False)
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
    fresh = tmp_path / "fresh" / "mlflow.db"
    with step_run("after-registering", tracking_uri=f"sqlite:///{fresh}") as run:
        experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == "roadvision"
