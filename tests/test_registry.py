"""roadvision.registry against a real (temporary SQLite) MLflow store and a real tiny bundle."""

from __future__ import annotations

import io

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
    assert float(info.tags["metric.slices.weather.clear.mcc"]) == pytest.approx(0.5)
    assert "metric.slices.weather.dawn/dusk.mcc" in info.tags
    assert info.metrics()["headline"] == pytest.approx(0.42)
    assert info.tags["roadvision.challenger.by"]  # audit: who
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
    assert tags["roadvision.champion.by"] == "bob"
    assert tags["roadvision.champion.reason"] == "better"
    assert tags["roadvision.champion.previous"] == v1
    assert registry.get_version(f"rv-audit/{v1}").tags["roadvision.champion.replaced_by"] == v2

    back = registry.rollback("rv-audit", reason="regression in prod", by="carol")
    assert back.version == v1 and registry.champion("rv-audit").version == v1
    assert "rollback from v2: regression in prod" in back.tags["roadvision.champion.reason"]
    assert registry.get_version(f"rv-audit/{v2}").tags["roadvision.rolled_back.by"] == "carol"
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
