"""TTA: "none" is the plain forward, flips are consistent, one batched forward, sliding window."""

from __future__ import annotations

import pytest
import torch
from _models import lanes_batch, roadwork_batch
from torch import nn

from roadvision.errors import UserError
from roadvision.models import ModelConfig, calibrated_probability, create_model, run_tta
from roadvision.models.tta import sliding_window_starts, tta_copies


class _CountForwards:
    def __init__(self, model: nn.Module):
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


@pytest.fixture(scope="module")
def roadwork_model():
    torch.manual_seed(0)
    model = create_model("roadwork_tiny", temperature=1.7, logit_bias=-0.3).eval()
    with torch.no_grad():  # a non-trivial head so probabilities spread
        model.head[-1].bias.fill_(0.4)
    return model


@pytest.fixture(scope="module")
def lanes_model():
    torch.manual_seed(0)
    return create_model("lanes_tiny", input_size=32).eval()


def test_none_equals_plain_forward_roadwork(roadwork_model):
    batch = roadwork_batch(b=3, v=2)
    with torch.no_grad():
        plain = calibrated_probability(roadwork_model(batch)["logits"], roadwork_model.cfg)
    assert torch.equal(run_tta(roadwork_model, batch, "none"), plain)
    # calibration really applies: T and bias change the numbers
    with torch.no_grad():
        raw = torch.sigmoid(roadwork_model(batch)["logits"])
    assert not torch.allclose(plain, raw)


def test_none_equals_plain_forward_lanes(lanes_model):
    batch = lanes_batch(b=2, size=32)
    with torch.no_grad():
        plain = lanes_model(batch)["logits"].softmax(1)
    assert torch.equal(run_tta(lanes_model, batch, "none"), plain)
    hot = create_model("lanes_tiny", input_size=32, temperature=2.0).eval()
    hot.load_state_dict(lanes_model.state_dict())
    with torch.no_grad():
        tempered = (hot(batch)["logits"] / 2.0).softmax(1)
    assert torch.equal(run_tta(hot, batch, "none"), tempered)


@pytest.mark.parametrize("mode", ["flip", "full"])
def test_roadwork_tta_is_flip_invariant(roadwork_model, mode):
    batch = roadwork_batch(b=2, v=2)
    flipped = {**batch, "views": batch["views"].flip(-1)}
    a, b = run_tta(roadwork_model, batch, mode), run_tta(roadwork_model, flipped, mode)
    assert a.shape == (2,) and ((a >= 0) & (a <= 1)).all()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a, run_tta(roadwork_model, batch, "none"))


@pytest.mark.parametrize("mode", ["flip", "full"])
def test_lanes_tta_is_flip_equivariant(lanes_model, mode):
    image = lanes_batch(b=1, size=48)["image"]
    a = run_tta(lanes_model, {"image": image}, mode)
    b = run_tta(lanes_model, {"image": image.flip(-1)}, mode)
    assert a.shape == (1, 4, 48, 48)
    torch.testing.assert_close(a, b.flip(-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.sum(1), torch.ones(1, 48, 48), rtol=1e-4, atol=1e-4)


def test_symmetric_input_flip_equals_none(roadwork_model):
    batch = roadwork_batch(b=2, v=2)
    views = batch["views"]
    batch["views"] = torch.cat([views[..., :16], views[..., :16].flip(-1)], dim=-1)
    torch.testing.assert_close(run_tta(roadwork_model, batch, "flip"),
                               run_tta(roadwork_model, batch, "none"))


@pytest.mark.parametrize("mode", ["flip", "full"])
def test_all_copies_in_one_forward(mode):
    torch.manual_seed(0)
    rw = create_model("roadwork_tiny").eval()
    counter = _CountForwards(rw)
    run_tta(rw, roadwork_batch(b=2, v=2), mode)
    assert counter.calls == 1
    lanes = create_model("lanes_tiny", input_size=32).eval()
    counter = _CountForwards(lanes)
    out = run_tta(lanes, {"image": torch.randn(1, 3, 80, 50)}, mode)  # sliding windows too
    assert counter.calls == 1 and out.shape == (1, 4, 80, 50)


class _PointwiseSegmenter(nn.Module):
    """A 1x1-conv model: per-pixel, so tiled inference must equal one full forward."""

    def __init__(self, input_size: int):
        super().__init__()
        self.cfg = ModelConfig(task="lanes", input_size=input_size)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, batch):
        return {"logits": self.conv(batch["image"])}


def test_sliding_window_stitches_exactly():
    torch.manual_seed(0)
    model = _PointwiseSegmenter(input_size=24).eval()
    image = torch.randn(2, 3, 70, 41)
    with torch.no_grad():
        full = model({"image": image})["logits"].softmax(1)
    torch.testing.assert_close(run_tta(model, {"image": image}, "none"), full)
    starts = sliding_window_starts(70, 24)
    assert starts[0] == 0 and starts[-1] == 70 - 24 and len(starts) > 3
    assert sliding_window_starts(20, 24) == [0]


class _CornerModel(nn.Module):
    """Roadwork stub: the logit is the top-left pixel of the first view."""

    def __init__(self):
        super().__init__()
        self.cfg = ModelConfig(task="roadwork")
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, batch):
        return {"logits": batch["views"][:, 0, 0, 0, 0] + self.dummy}


def test_confidence_weighting_prefers_the_confident_copy():
    views = torch.zeros(1, 1, 3, 8, 8)
    views[..., 0, 0] = 4.0  # confident (p=0.98) unflipped, p=0.5 when flipped
    merged = run_tta(_CornerModel(), {"views": views}, "flip").item()
    plain_mean = (torch.sigmoid(torch.tensor(4.0)).item() + 0.5) / 2
    assert merged > 0.95 > plain_mean


def test_modes_and_errors():
    assert tta_copies("none") == [(1.0, False)]
    assert len(tta_copies("flip")) == 2 and len(tta_copies("full")) == 6
    assert tta_copies("full")[0] == (1.0, False)
    with pytest.raises(UserError, match="flip"):
        run_tta(_CornerModel(), {"views": torch.zeros(1, 1, 3, 8, 8)}, "mirror")
