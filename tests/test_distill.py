"""Distillation: the soft loss is a proper KL, and a student bundle comes out of an ensemble."""

from __future__ import annotations

import json

import pytest
import torch
from _training import make_roadwork

from roadvision.errors import UserError
from roadvision.training import TrainConfig, distill, train
from roadvision.training.distill import soft_kl


def test_soft_kl_is_zero_at_the_teacher_and_positive_elsewhere():
    logits = torch.tensor([-2.0, 0.5, 3.0])
    probs = torch.sigmoid(logits)
    assert soft_kl(logits, probs, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_kl(logits + 1.0, probs, 2.0).item() > 1e-3
    seg = torch.randn(2, 4, 5, 5)
    assert soft_kl(seg, torch.softmax(seg, 1), 3.0).item() == pytest.approx(0.0, abs=1e-5)
    assert soft_kl(seg.flip(1), torch.softmax(seg, 1), 3.0).item() > 1e-3
    # the gradient pulls the student towards the teacher
    s = torch.zeros(1, requires_grad=True)
    soft_kl(s, torch.tensor([0.9]), 1.0).backward()
    assert s.grad.item() < 0


def test_distill_ensemble_into_student_bundle(tmp_path):
    data = make_roadwork(tmp_path / "data", n=24, size=32)
    base = TrainConfig.for_profile("tiny", "roadwork", epochs=1, max_steps_per_epoch=2)
    teachers = [train(data, tmp_path / f"t{s}", base.replace(seed=s)).bundle_dir for s in (0, 1)]
    # a student with a different architecture: fewer views, no attention layers
    cfg = base.replace(preset="roadwork_tiny", distill_alpha=0.3, distill_temperature=2.0,
                       model_overrides={"num_views": 3, "num_attn_layers": 0, "embed_dim": 16})
    result = distill(teachers, data, tmp_path / "student", cfg)
    assert (result.bundle_dir / "config.json").is_file()
    config = json.loads((result.bundle_dir / "config.json").read_text())
    assert config["model_config"]["num_attn_layers"] == 0
    assert config["extra"]["distillation"]["alpha"] == 0.3
    h = result.history[0]
    assert h["train_soft_kl"] >= 0.0 and "train_hard" in h
    with pytest.raises(UserError, match="at least one teacher"):
        distill([], data, tmp_path / "s2", cfg)
