"""Encoders: the timm contract and the offline ImageNet EfficientNet-Lite0 weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from roadvision.errors import UserError
from roadvision.models import create_model  # first: makes timm importable on CPU torch
from roadvision.models.config import IMAGENET_MEAN, IMAGENET_STD
from roadvision.models.encoders import (
    FeatureEncoder,
    PooledEncoder,
    lite0_imagenet_state_dict,
    lite_imagenet_state_dict,
    load_weights,
)

timm = pytest.importorskip("timm")

EGYPTIAN_CAT = 285
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


def test_feature_encoder_contract():
    enc = FeatureEncoder("test_efficientnet", min_reduction=4)
    feats = enc(torch.randn(1, 3, 64, 64))
    assert enc.reductions == [4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == enc.out_channels
    assert [64 // r for r in enc.reductions] == [f.shape[-1] for f in feats]
    assert FeatureEncoder("test_efficientnet", min_reduction=2).reductions[0] == 2


def test_pooled_encoder_contract():
    enc = PooledEncoder("test_efficientnet")
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, enc.num_features)


def test_lite0_weights_map_onto_timm_names_and_shapes():
    state = lite0_imagenet_state_dict()
    with torch.device("meta"):
        reference = timm.create_model("efficientnet_lite0").state_dict()
    assert list(state) == list(reference)
    assert all(state[k].shape == reference[k].shape for k in state)


def _imagenet_top5(model: torch.nn.Module, image: np.ndarray) -> list[int]:
    resized = np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC))
    x = torch.from_numpy(resized.astype(np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        return model(x[None])[0].topk(5).indices.tolist()


def test_lite0_imagenet_weights_see_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = timm.create_model("efficientnet_lite0")
    model.load_state_dict(lite0_imagenet_state_dict())
    top5 = _imagenet_top5(model.eval(), skimage_data.chelsea())
    assert top5[0] in CAT_CLASSES, top5
    assert top5[0] == EGYPTIAN_CAT
    # Random weights do not: the check above depends on the loaded weights.
    random_top5 = _imagenet_top5(timm.create_model("efficientnet_lite0").eval(),
                                 skimage_data.chelsea())
    assert random_top5[0] not in CAT_CLASSES


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_weights_map_and_see_a_cat_and_a_cup(variant):
    """Lite1/Lite2 packaged weights under timm names recognise two real photographs
    (skimage's ``chelsea`` cat and ``coffee`` cup): the mapping by position is right."""
    skimage_data = pytest.importorskip("skimage.data")
    state = lite_imagenet_state_dict(variant)
    model = timm.create_model(f"efficientnet_lite{variant}")
    model.load_state_dict(state)  # strict: every name and shape matches
    model.eval()
    cat_top5 = _imagenet_top5(model, skimage_data.chelsea())
    assert cat_top5[0] == EGYPTIAN_CAT, cat_top5
    assert set(cat_top5[:3]) <= set(CAT_CLASSES), cat_top5
    cup_top5 = _imagenet_top5(model, skimage_data.coffee())
    assert {ESPRESSO, CUP} <= set(cup_top5), cup_top5


def test_lite_weights_fit_only_their_encoder():
    enc = PooledEncoder("efficientnet_lite1", weights="imagenet-lite1")
    torch.testing.assert_close(enc.model.conv_stem.weight,
                               lite_imagenet_state_dict(1)["conv_stem.weight"])
    with pytest.raises(UserError, match="efficientnet_lite2"):
        PooledEncoder("efficientnet_lite1", weights="imagenet-lite2")


def test_preset_encoders_receive_pretrained_weights():
    state = lite0_imagenet_state_dict()
    model = create_model("roadwork_small")
    stem = model.encoder.model.conv_stem.weight
    torch.testing.assert_close(stem, state["conv_stem.weight"])
    lanes = create_model("lanes_small")
    torch.testing.assert_close(lanes.encoder.model.conv_stem.weight, state["conv_stem.weight"])
    random = create_model("roadwork_small", encoder_weights="random")
    assert not torch.equal(random.encoder.model.conv_stem.weight, state["conv_stem.weight"])


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_presets_receive_their_weights(variant):
    stem = lite_imagenet_state_dict(variant)["conv_stem.weight"]
    for preset in (f"roadwork_lite{variant}", f"lanes_lite{variant}"):
        model = create_model(preset)
        torch.testing.assert_close(model.encoder.model.conv_stem.weight, stem)


def test_local_weights_file_round_trip(tmp_path):
    from safetensors.torch import save_file

    source = PooledEncoder("test_efficientnet")
    path = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    target = PooledEncoder("test_efficientnet", weights=str(path))
    for k, v in source.model.state_dict().items():
        assert torch.equal(v, target.model.state_dict()[k])


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="neither"):
        PooledEncoder("test_efficientnet", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="efficientnet_lite0"):
        PooledEncoder("test_efficientnet", weights="imagenet-lite0")
    other = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="lack"):
        load_weights(timm.create_model("test_efficientnet"), str(other), "test_efficientnet")
