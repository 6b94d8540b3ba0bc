"""Bundle: save/load round trip, no pickle, versions and config updates."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from _models import lanes_batch, roadwork_batch

from roadvision.errors import UserError
from roadvision.models import (
    bundle_version,
    create_model,
    load_bundle,
    save_bundle,
    update_bundle_config,
)
from roadvision.models.bundle import CONFIG_FILE, WEIGHTS_FILE, bundle_task, locate_bundle


def _perturb(model):
    # BatchNorm running stats and weights away from their init, so a load that kept the
    # fresh init would be caught.
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("name", ["roadwork_tiny", "lanes_tiny"])
def test_round_trip_identical_outputs(tmp_path, name, monkeypatch):
    model = _perturb(create_model(name, temperature=1.3, logit_bias=0.2))
    path = save_bundle(model, tmp_path / "b", extra={"data_hash": "abc", "metrics": {"mcc": 0.5}})
    batch = roadwork_batch() if model.cfg.task == "roadwork" else lanes_batch()

    # Loading must not unpickle anything.
    def _no_pickle(*args, **kwargs):
        raise AssertionError("load_bundle unpickled data")

    monkeypatch.setattr(pickle, "load", _no_pickle)
    monkeypatch.setattr(pickle, "loads", _no_pickle)
    monkeypatch.setattr(torch, "load", _no_pickle)
    loaded = load_bundle(path)
    assert not loaded.training
    assert loaded.cfg == model.cfg and loaded.cfg.temperature == 1.3
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert loaded.bundle_config["extra"]["metrics"] == {"mcc": 0.5}


def test_bundle_files_are_json_and_safetensors(tmp_path):
    path = save_bundle(create_model("roadwork_tiny"), tmp_path / "b")
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["model_class"] == "RoadworkClassifier"
    assert config["preset"] == "roadwork_tiny"
    assert config["model_config"]["temperature"] == 1.0
    assert "roadvision_version" in config
    raw = (path / WEIGHTS_FILE).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert "encoder.model.conv_stem.weight" in header


def test_version_is_short_sha_and_tracks_weights(tmp_path):
    model = create_model("roadwork_tiny")
    first = bundle_version(save_bundle(model, tmp_path / "a"))
    assert len(first) == 12 and int(first, 16) >= 0
    assert bundle_version(save_bundle(model, tmp_path / "b")) == first
    with torch.no_grad():
        model.head[-1].bias.add_(1.0)
    assert bundle_version(save_bundle(model, tmp_path / "c")) != first


def test_update_config_calibration(tmp_path):
    path = save_bundle(create_model("roadwork_tiny"), tmp_path / "b")
    version = bundle_version(path)
    update_bundle_config(path, temperature=2.0, logit_bias=-0.5, extra={"ece": 0.01})
    loaded = load_bundle(path)
    assert (loaded.cfg.temperature, loaded.cfg.logit_bias) == (2.0, -0.5)
    assert loaded.bundle_config["extra"]["ece"] == 0.01
    assert bundle_version(path) == version  # weights untouched
    with pytest.raises(UserError):
        update_bundle_config(path, temperature=0.0)


def test_bad_bundles_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not a bundle directory"):
        load_bundle(tmp_path / "missing")
    path = save_bundle(create_model("roadwork_tiny"), tmp_path / "b")
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**config, "model_class": "os.system"}))
    with pytest.raises(UserError, match="unknown model class"):
        load_bundle(path)
    (path / CONFIG_FILE).write_text(json.dumps(config))
    (path / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(UserError, match="safetensors"):
        load_bundle(path)
    other = save_bundle(create_model("roadwork_tiny", embed_dim=16), tmp_path / "c")
    (path / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(UserError, match="do not fit"):
        load_bundle(path)


@pytest.mark.parametrize("layout", ["", "bundle", "artifacts/bundle"])
@pytest.mark.parametrize("name", ["roadwork_tiny", "lanes_tiny"])
def test_locate_bundle_in_a_bundle_or_an_mlflow_model_folder(tmp_path, layout, name):
    # "artifacts/bundle" is an MLflow model as the registry logs it and KServe downloads it
    root = tmp_path / "model"
    bundle = save_bundle(create_model(name), root / layout if layout else root)
    if layout:
        (root / "MLmodel").write_text("artifact_path: model\n")
    assert locate_bundle(root) == bundle
    assert bundle_task(root) == bundle_task(bundle) == name.split("_")[0]


def test_locate_bundle_and_bundle_task_refuse_what_is_no_bundle(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        locate_bundle(tmp_path / "missing")
    (tmp_path / "artifacts" / "other").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no config.json in it \(nor in bundle/ or "
                                        r"artifacts/bundle/\)"):
        locate_bundle(tmp_path)
    path = save_bundle(create_model("lanes_tiny"), tmp_path / "b")
    config = json.loads((path / CONFIG_FILE).read_text())
    del config["task"]  # bundles written before the top-level key: read from model_config
    (path / CONFIG_FILE).write_text(json.dumps(config))
    assert bundle_task(path) == "lanes"
    config["model_config"]["task"] = "satellites"
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(UserError, match="task 'satellites' is not one of"):
        bundle_task(path)
