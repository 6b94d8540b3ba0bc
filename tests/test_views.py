"""The view configuration: decided by the training images, stored in the bundle, obeyed by
every reader whatever the input size; old bundles keep their cut with a warning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from _training import make_roadwork

from roadvision.data.multiview import training_view_mode
from roadvision.errors import UserError
from roadvision.models import ModelConfig, create_model, prepare_sample
from roadvision.models.bundle import (
    ViewConfigWarning,
    load_bundle,
    save_bundle,
    update_bundle_config,
)
from roadvision.runtime.inference import predict
from roadvision.training import TrainConfig
from roadvision.training.train import build_model

LARGE = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def _views_run(model: torch.nn.Module, image: np.ndarray) -> int:
    """How many views the encoder actually saw for one image, through the serving path."""
    seen: list[int] = []
    handle = model.encoder.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        predict(model, [prepare_sample(model.cfg, image)])
    finally:
        handle.remove()
    return sum(seen)


def test_training_view_mode_from_image_sizes():
    assert training_view_mode([(320, 240)] * 3, view_size=160) == "single"  # 320 <= 2 x 160
    assert training_view_mode([(320, 240), (640, 480)], view_size=160) == "multi"
    assert training_view_mode([(4032, 3024)], view_size=224, num_views=1) == "single"
    with pytest.raises(ValueError):
        training_view_mode([], view_size=160)


def test_config_view_modes():
    assert ModelConfig(view_mode="single", num_views=12).num_views == 1
    with pytest.raises(UserError, match="num_views >= 2"):
        ModelConfig(view_mode="multi", num_views=1)
    with pytest.raises(UserError, match="view_mode"):
        ModelConfig(view_mode="tiles")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    # 32 px images, roadwork_tiny's 32 px views: never more than one view in training
    return make_roadwork(tmp_path_factory.mktemp("views") / "small", n=10, size=32)


def test_single_view_bundle_runs_one_view_on_a_large_input(small_data, tmp_path):
    model = build_model(small_data, TrainConfig.for_profile("tiny", "roadwork"))
    assert model.cfg.view_mode == "single" and model.cfg.num_views == 1
    save_bundle(model, tmp_path / "bundle")
    stored = json.loads((tmp_path / "bundle" / "config.json").read_text())["model_config"]
    assert stored["view_mode"] == "single"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ViewConfigWarning)  # a pinned bundle loads quietly
        loaded = load_bundle(tmp_path / "bundle")
    assert _views_run(loaded, LARGE) == 1  # 640x480 would give 5 views under the cut


def test_multi_view_training_keeps_the_cut(tmp_path):
    data = make_roadwork(tmp_path / "large", n=10, size=96)  # 96 > 2 x 32: 5 views
    model = build_model(data, TrainConfig.for_profile("tiny", "roadwork"))
    assert model.cfg.view_mode == "multi" and model.cfg.num_views == 5
    assert _views_run(model.eval(), LARGE) == 5
    # an explicit choice wins over the data
    pinned = build_model(data, TrainConfig.for_profile(
        "tiny", "roadwork", model_overrides={"view_mode": "single"}))
    assert pinned.cfg.num_views == 1


def test_old_bundle_keeps_its_cut_with_a_warning_and_can_be_pinned(tmp_path):
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["model_config"]["view_mode"]  # as written before the field existed
    path.write_text(json.dumps(config))
    with pytest.warns(ViewConfigWarning, match="does not store its view configuration"):
        old = load_bundle(tmp_path / "old")
    assert _views_run(old, LARGE) == 5  # the multiview cut it always had
    update_bundle_config(tmp_path / "old", view_mode="single")
    pinned = load_bundle(tmp_path / "old")  # the 5-position view embedding keeps position 0
    assert _views_run(pinned, LARGE) == 1
    torch.testing.assert_close(pinned.view_pos, old.view_pos[:, :1])
