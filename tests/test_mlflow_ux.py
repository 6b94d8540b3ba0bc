"""What a user sees of a registration in MLflow: a real pipeline-style registration into a real
(temporary SQLite) store, then the version's tags, metrics, data set input, report and audit
as MLflow's UI and client read them.

``register_like_the_pipeline`` is shared with ``tests/test_browser.py``, which shows the same
registration in a real MLflow UI.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _pipeline import _empty_mlflow_db  # noqa: F401 (fixture)
from _training import make_roadwork

MAX_VERSION_TAGS = 15  # issue 16: a version page a person can read


@dataclass
class Registered:
    name: str
    version: str
    data_dir: Path
    report: Path  # the error analysis as the error_analysis step wrote it
    pipeline_run_id: str


def register_like_the_pipeline(tmp: Path, name: str = "rv-ux") -> Registered:
    """A tiny bundle through the steps' own functions: evaluate, error analysis, register
    under a pipeline parent run (with the pipeline's parameters), then promote it."""
    from roadvision import registry
    from roadvision.components._base import open_pipeline_run, write_json
    from roadvision.components.error_analysis import run_error_analysis
    from roadvision.components.register import run_register
    from roadvision.evaluation import evaluate
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_roadwork(tmp / "data", n=30, size=32)
    torch.manual_seed(0)
    bundle = save_bundle(create_model("roadwork_tiny"), tmp / "bundle")
    write_json(tmp / "metrics.json", evaluate(bundle, data, split="test"))
    run_id = f"ux-{uuid.uuid4().hex[:8]}"
    open_pipeline_run(run_id, {"task": "roadwork", "epochs": 2, "model_preset": "roadwork_tiny"})
    report = run_error_analysis(bundle, data, tmp / "error_analysis.html", pipeline_run_id=run_id)
    out = run_register(bundle, tmp / "metrics.json", data, task="roadwork", model_name=name,
                       report_path=report, teacher_headlines=[0.25, 0.5],
                       pipeline_run_id=run_id)
    registry.promote(name, out["version"], reason="best so far", by="ux-test")
    return Registered(name, out["version"], data, report, run_id)


@pytest.fixture(scope="module")
def ux_store(tmp_path_factory, _empty_mlflow_db):  # noqa: F811
    """A fresh SQLite store for the module, named by the environment as a pipeline step's
    process sees it; yields the database file."""
    tmp = tmp_path_factory.mktemp("ux")
    db = tmp / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(_empty_mlflow_db, db)
    with pytest.MonkeyPatch.context() as mp:
        # Both URIs set here, so that leaving the module puts back what the steps' configure()
        # writes into the environment.
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        mp.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{db}")
        mp.setenv("ROADVISION_HOME", str(tmp / "home"))
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "ROADVISION_PIPELINE_RUN_ID",
                     "KFP_RUN_ID"):
            mp.delenv(name, raising=False)
        yield db
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def registered(ux_store):
    """One registration for the whole module (it costs most of the module's time)."""
    return register_like_the_pipeline(ux_store.parent.parent)


def _client():
    from roadvision.registry import RegistryClient

    return RegistryClient().mlflow


def logged_model_id(mv) -> str:
    from roadvision.registry.publish import logged_model_id as find

    model_id = find(mv)
    assert model_id, mv
    return model_id


def test_version_has_few_tags_and_every_metric_on_the_run_and_model(registered):
    client = _client()
    mv = client.get_model_version(registered.name, registered.version)
    tags = dict(mv.tags)
    # before: ~110 tags, ~100 of them metric.slices.*; registration + challenger + champion now
    assert len(tags) <= MAX_VERSION_TAGS, sorted(tags)
    assert not any(k.startswith("metric.slices.") for k in tags)
    assert float(tags["metric.headline"]) == pytest.approx(
        client.get_run(mv.run_id).data.metrics["headline"], abs=1e-5)
    run = client.get_run(mv.run_id)
    slices = {k for k in run.data.metrics if k.startswith("slices.weather.")}
    assert {"slices.weather.clear.mcc", "slices.weather.clear.n"} <= slices
    assert run.data.metrics["teacher_1.headline"] == pytest.approx(0.5)
    # the logged model (MLflow 3) carries them too: its page lists them with the data set
    model = client.get_logged_model(logged_model_id(mv))
    by_key = {m.key: m for m in model.metrics}
    assert "slices.city.alpha.n" in by_key and "headline" in by_key


def test_dataset_is_a_run_input_with_the_content_hash_as_digest(registered):
    from roadvision.data.contract import read_info
    from roadvision.registry.publish import DIGEST_CHARS

    client = _client()
    mv = client.get_model_version(registered.name, registered.version)
    inputs = client.get_run(mv.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    info = read_info(registered.data_dir)
    assert dataset.digest == info.content_hash[:DIGEST_CHARS] != ""
    assert dataset.name == "roadwork-synthetic"
    assert {t.key: t.value for t in inputs[0].tags}.get("synthetic") == "true"
    model = client.get_logged_model(logged_model_id(mv))
    # the evaluation's metrics name the data set they were measured on
    measured = [m for m in model.metrics if m.key == "headline" or m.key.startswith("slices.")]
    assert measured and {m.dataset_digest for m in measured} == {dataset.digest}


def test_report_sits_beside_the_model_titled_with_its_version(registered, tmp_path):
    client = _client()
    mv = client.get_model_version(registered.name, registered.version)
    names = {a.path for a in client.list_logged_model_artifacts(logged_model_id(mv))}
    assert {"report.html", "MLmodel"} <= names
    from mlflow.artifacts import download_artifacts

    local = download_artifacts(f"models:/{registered.name}/{registered.version}/report.html",
                               dst_path=str(tmp_path / "dl"))
    page = Path(local).read_text()
    assert f"<title>Error analysis: {registered.name} v{registered.version}</title>" in page
    assert "not registered" in registered.report.read_text()  # the step's copy: before it was
    assert registered.report.name == "error_analysis.html"


def test_registered_model_carries_its_drift_reference_and_the_step_input_is_untouched(
        registered, ux_store, tmp_path):
    from mlflow.artifacts import download_artifacts

    from roadvision.data.contract import read_manifest
    from roadvision.models.bundle import bundle_version
    from roadvision.monitoring.reference import find_reference, load_reference

    local = Path(download_artifacts(f"models:/{registered.name}/{registered.version}",
                                    dst_path=str(tmp_path / "dl")))
    found = find_reference(local)
    assert found is not None, sorted(p.name for p in local.rglob("*"))
    reference = load_reference(found)
    train_rows = int((read_manifest(registered.data_dir)["split"] == "train").sum())
    assert reference.info["rows"] == min(200, train_rows) == len(reference.features["embeddings"])
    step_input = ux_store.parent.parent / "bundle"
    assert reference.info["bundle_version"] == bundle_version(step_input)
    assert find_reference(step_input) is None  # written into a copy, not the step's input


def test_parent_run_has_the_pipeline_parameters_and_headline_metrics(registered):
    from roadvision.components._base import KIND_TAG, PIPELINE_TAG

    client = _client()
    mv = client.get_model_version(registered.name, registered.version)
    experiment = client.get_run(mv.run_id).info.experiment_id
    [parent] = client.search_runs([experiment], filter_string=(
        f"tags.`{PIPELINE_TAG}` = '{registered.pipeline_run_id}' and tags.`{KIND_TAG}` = "
        "'pipeline'"))
    assert parent.data.params == {"task": "roadwork", "epochs": "2",
                                  "model_preset": "roadwork_tiny"}
    metrics = parent.data.metrics
    assert metrics["student.headline"] == pytest.approx(float(mv.tags["metric.headline"]),
                                                        abs=1e-5)
    assert {"student.accuracy", "student.mcc", "teacher_0.headline"} <= set(metrics)
    assert not any(k.startswith("student.slices") for k in metrics)  # headline numbers only


def test_audit_is_one_readable_tag_per_alias_change(registered):
    from roadvision import registry
    from roadvision.registry.audit import AUDIT_ENTRY_PREFIX

    client = _client()
    tags = client.get_registered_model(registered.name).tags
    entries = {k: v for k, v in tags.items() if k.startswith(AUDIT_ENTRY_PREFIX)}
    assert len(entries) == 2  # @challenger at registration, then the promotion
    first, second = (entries[k] for k in sorted(entries))
    assert " set_alias @challenger v1 (was none) by " in first
    assert second.endswith(" promote @champion v1 (was none) by ux-test: best so far")
    assert not second.lstrip().startswith("{")  # a sentence, not a JSON blob
    log = registry.audit_log(registered.name)
    assert [(e["seq"], e["action"], e["alias"], e["version"]) for e in log] == [
        (1, "set_alias", "challenger", "1"), (2, "promote", "champion", "1")]
