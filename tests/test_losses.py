"""Losses: hand-checked values and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from roadvision.errors import UserError
from roadvision.models.losses import (
    DiceFocalLoss,
    RoadworkLoss,
    bernoulli_kl,
    binary_focal_loss,
    create_loss,
    default_lane_class_weights,
    focal_loss,
    soft_cldice_loss,
    soft_dice_loss,
    soft_skeleton,
)


def test_binary_focal_hand_value():
    # logit 0 -> p = 0.5; target 1: bce = ln 2, (1 - p_t)^2 = 0.25
    value = binary_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), gamma=2.0)
    assert value.item() == pytest.approx(0.25 * math.log(2), rel=1e-6)
    # gamma 0 = plain BCE; label smoothing 0.2 turns target 1 into 0.9
    logit = torch.tensor([2.0])
    expected = -(0.9 * math.log(torch.sigmoid(logit).item())
                 + 0.1 * math.log(1 - torch.sigmoid(logit).item()))
    smoothed = binary_focal_loss(logit, torch.tensor([1.0]), gamma=0.0, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(expected, rel=1e-5)


def test_focal_and_dice_near_zero_for_perfect_prediction():
    target = torch.randint(0, 4, (2, 8, 8))
    logits = 20.0 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    w = torch.tensor(default_lane_class_weights(4))
    assert focal_loss(logits, target, w).item() < 1e-6
    assert soft_dice_loss(logits, target, w).item() < 1e-4
    wrong = torch.roll(logits, 1, dims=1)
    assert focal_loss(wrong, target, w).item() > 1.0
    assert soft_dice_loss(wrong, target, w).item() > 0.9


def test_focal_multiclass_hand_value_and_weights():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[0, 1]]])
    unweighted = 0.25 * math.log(2)
    assert focal_loss(logits, target, None).item() == pytest.approx(unweighted, rel=1e-6)
    # weights normalise: equal per-pixel loss stays the same whatever the weights
    w = torch.tensor([0.1, 5.0])
    assert focal_loss(logits, target, w).item() == pytest.approx(unweighted, rel=1e-6)


def test_dice_skips_absent_classes():
    target = torch.zeros(1, 4, 4, dtype=torch.long)  # only background present
    logits = torch.zeros(1, 4, 4, 4)
    logits[:, 0] = 10.0
    assert soft_dice_loss(logits, target, None).item() < 1e-3


def test_lanes_loss_parts_and_class_weight_default():
    loss = create_loss("lanes")
    assert loss.class_weights.tolist() == pytest.approx([0.1, 5, 5, 3])
    assert len(create_loss("lanes", num_classes=12).class_weights) == 12
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    value, parts = loss({"logits": logits}, {"mask": torch.randint(0, 4, (2, 8, 8))})
    value.backward()
    assert set(parts) == {"focal", "dice", "loss"}
    assert parts["loss"] == pytest.approx(parts["focal"] + parts["dice"], rel=1e-5)
    with pytest.raises(UserError):
        DiceFocalLoss(class_weights=[1.0, 2.0], num_classes=4)


# --- soft clDice ------------------------------------------------------------------------

def _line_target(width: int = 3) -> torch.Tensor:
    target = torch.zeros(1, 24, 64, dtype=torch.long)
    target[0, 10:10 + width, 2:62] = 1  # a white_solid line, 60 px long
    return target


def _sure(mask: torch.Tensor) -> torch.Tensor:
    return 20.0 * torch.nn.functional.one_hot(mask, 4).permute(0, 3, 1, 2).float()


def test_soft_skeleton_is_inside_the_mask_and_thin():
    x = torch.nn.functional.one_hot(_line_target(3), 4).permute(0, 3, 1, 2).float()
    skel = soft_skeleton(x[:, 1:2])
    assert bool((skel <= x[:, 1:2] + 1e-6).all())
    # a 3 px line thins to its centre row
    assert skel[0, 0, 11, 5:60].min() > 0.99 and skel[0, 0, 10, 5:60].max() < 1e-6


def test_cldice_perfect_is_zero_and_a_gap_costs_more_than_trimming():
    target = _line_target()
    assert soft_cldice_loss(_sure(target), target, None).item() < 1e-5
    gap, trimmed = target.clone(), target.clone()
    gap[0, 10:13, 30:36] = 0  # 18 px cut across the line: it is broken in two
    trimmed[0, 10, 20:38] = 0  # the same 18 px off its edge: still one line
    w = torch.tensor(default_lane_class_weights(4))
    # Dice cannot tell them apart; clDice can
    assert soft_dice_loss(_sure(gap), target, w).item() == pytest.approx(
        soft_dice_loss(_sure(trimmed), target, w).item(), rel=1e-4)
    broken = soft_cldice_loss(_sure(gap), target, None).item()
    assert broken > 0.03
    assert broken > soft_cldice_loss(_sure(trimmed), target, None).item() + 0.03


def test_cldice_gradients_finite_and_ignore_index_respected():
    torch.manual_seed(0)
    target = _line_target().repeat(2, 1, 1)
    logits = torch.randn(2, 4, 24, 64, requires_grad=True)
    value = soft_cldice_loss(logits, target, None)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    # what the prediction says on ignored pixels changes nothing
    ignored = target.clone()
    ignored[:, :, 40:] = -100
    other = logits.detach().clone()
    other[..., 40:] = torch.randn_like(other[..., 40:]) * 10
    a = soft_cldice_loss(logits.detach(), ignored, None, ignore_index=-100)
    b = soft_cldice_loss(other, ignored, None, ignore_index=-100)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert a.item() != pytest.approx(soft_cldice_loss(other, target, None).item(), rel=1e-3)


def test_lanes_loss_cldice_term_only_when_weighted():
    target = _line_target()
    logits = torch.randn(1, 4, 24, 64, requires_grad=True)
    plain = create_loss("lanes")
    with_cl = create_loss("lanes", cldice=0.5)
    value, parts = with_cl({"logits": logits}, {"mask": target})
    base, base_parts = plain({"logits": logits}, {"mask": target})
    assert "cldice" not in base_parts and parts["cldice"] > 0
    assert value.item() == pytest.approx(base.item() + 0.5 * parts["cldice"], rel=1e-5)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(UserError, match="cldice"):
        create_loss("lanes", cldice=-1.0)


def _outputs(b=4, v=3, requires_grad=True):
    return {
        "logits": torch.randn(b, requires_grad=requires_grad),
        "view_logits": torch.randn(b, v, requires_grad=requires_grad),
        "view_mask": torch.ones(b, v, dtype=torch.bool),
        "weather_logits": torch.randn(b, 5, requires_grad=requires_grad),
    }


def test_roadwork_weather_all_null_is_zero_and_finite():
    outputs = _outputs()
    batch = {"label": torch.tensor([0.0, 1, 0, 1]), "weather": torch.full((4,), 5)}
    value, parts = RoadworkLoss()(outputs, batch)
    assert parts["weather"] == 0.0
    value.backward()
    assert torch.isfinite(outputs["logits"].grad).all()
    assert torch.isfinite(outputs["weather_logits"].grad).all()
    assert (outputs["weather_logits"].grad == 0).all()


def test_roadwork_weather_masks_null_rows():
    outputs = _outputs()
    batch = {"label": torch.zeros(4), "weather": torch.tensor([1, 5, 5, 2])}
    _, parts = RoadworkLoss()(outputs, batch)
    expected = torch.nn.functional.cross_entropy(
        outputs["weather_logits"][[0, 3]], torch.tensor([1, 2])).item()
    assert parts["weather"] == pytest.approx(expected, rel=1e-5)


def test_consistency_zero_when_views_agree_and_positive_otherwise():
    agree = _outputs(requires_grad=False)
    agree["view_logits"] = torch.full((4, 3), 1.3)
    batch = {"label": torch.ones(4)}
    assert RoadworkLoss()(agree, batch)[1]["consistency"] == pytest.approx(0.0, abs=1e-6)
    agree["view_logits"] = torch.tensor([[3.0, -3.0, 0.0]] * 4)
    assert RoadworkLoss()(agree, batch)[1]["consistency"] > 0.1
    # hand value of the helper: KL(Bern(.5) || Bern(.25))
    kl = bernoulli_kl(torch.tensor(0.5), torch.tensor(0.25)).item()
    assert kl == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75), rel=1e-5)


def test_roadwork_weights_configurable_and_single_view():
    outputs = _outputs(v=1)
    batch = {"label": torch.ones(4), "weather": torch.tensor([0, 1, 2, 3])}
    only_focal, parts = create_loss("roadwork", consistency=0, view=0, weather=0)(outputs, batch)
    assert only_focal.item() == pytest.approx(parts["focal"], rel=1e-6)
    assert parts["consistency"] == 0.0  # one view agrees with itself
    with pytest.raises(UserError, match="roadwork"):
        create_loss("roadwork", bogus=1.0)
    with pytest.raises(UserError, match="unknown task"):
        create_loss("detection")
