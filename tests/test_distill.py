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


# --- the unlabelled pool (issue 13 item 8) -----------------------------------------------------

POOL = "synth://roadwork?n=8&size=32x32&seed=5"  # the labelled images' size: cheap steps


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """A labelled tiny data set and two 1-epoch teachers trained on it."""
    root = tmp_path_factory.mktemp("ensemble")
    data = make_roadwork(root / "data", n=24, size=32)
    base = TrainConfig.for_profile("tiny", "roadwork", epochs=1, max_steps_per_epoch=2)
    teachers = [train(data, root / f"t{s}", base.replace(seed=s)).bundle_dir for s in (0, 1)]
    return data, teachers, base.replace(preset="roadwork_tiny", batch_size=8)


def test_distill_ensemble_into_student_bundle(ensemble, tmp_path):
    data, teachers, _ = ensemble
    base = TrainConfig.for_profile("tiny", "roadwork", epochs=1, max_steps_per_epoch=2)
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


class _TeacherImages:
    """Images the teachers forward (a real torch forward hook on every module whose weights
    are all frozen, as distill freezes its teachers and never the student)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> _TeacherImages:
        from roadvision.models.roadwork_classifier import RoadworkClassifier

        def hook(module, args, _out):
            if isinstance(module, RoadworkClassifier) and not any(
                    p.requires_grad for p in module.parameters()):
                self.count += int(args[0]["views"].shape[0])

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def test_pool_rows_get_only_the_soft_loss():
    """alpha = 1 leaves only the hard term: its gradient must not reach pool rows, for both
    tasks, and a pool row's (placeholder) label must not change the loss."""
    from roadvision.models.losses import create_loss
    from roadvision.training.distill import distill_loss

    pool = torch.tensor([False, False, True, True])
    logits = torch.tensor([1.0, -1.0, 2.0, -2.0], requires_grad=True)
    batch = {"label": torch.tensor([1.0, 0.0, 0.0, 1.0]), "_unlabelled": pool}
    hard = create_loss("roadwork")
    target = torch.full((4,), 0.5)
    loss, parts = distill_loss(hard, {"logits": logits}, batch, target, 1.0, 2.0)
    loss.backward()
    assert (logits.grad[pool] == 0).all() and (logits.grad[~pool] != 0).all()
    assert parts["labelled_share"] == 0.5
    flipped = {**batch, "label": torch.tensor([1.0, 0.0, 1.0, 0.0])}  # pool labels only
    same, _ = distill_loss(hard, {"logits": logits}, flipped, target, 0.5, 2.0)
    mixed, _ = distill_loss(hard, {"logits": logits}, batch, target, 0.5, 2.0)
    assert same.item() == pytest.approx(mixed.item())
    moved = {**batch, "label": torch.tensor([0.0, 0.0, 0.0, 1.0])}  # a labelled row's label
    assert distill_loss(hard, {"logits": logits}, moved, target, 0.5, 2.0)[0].item() \
        != pytest.approx(mixed.item())
    # the soft term does reach pool rows
    logits.grad = None
    distill_loss(hard, {"logits": logits}, batch, target, 0.0, 2.0)[0].backward()
    assert (logits.grad[pool] != 0).all()
    # lanes: per-pixel hard loss masked the same way
    seg = torch.randn(4, 4, 6, 6, requires_grad=True)
    lanes = {"mask": torch.randint(0, 4, (4, 6, 6)), "_unlabelled": pool}
    distill_loss(create_loss("lanes"), {"logits": seg}, lanes,
                 torch.softmax(torch.randn(4, 4, 6, 6), 1), 1.0, 2.0)[0].backward()
    assert (seg.grad[pool] == 0).all() and seg.grad[~pool].abs().sum() > 0


def test_pool_distillation_caches_teacher_targets(ensemble, tmp_path):
    from roadvision.runtime.readers import load_rows
    from roadvision.training.teacher_cache import CACHE_FILE

    data, teachers, cfg = ensemble
    n_train = len(load_rows(data, ["train"]))
    cfg = cfg.replace(epochs=2, max_steps_per_epoch=2, distill_unlabelled=POOL)
    out = tmp_path / "student"
    with _TeacherImages() as first:
        part = distill(teachers, data, out, cfg.replace(stop_after_epochs=1))
    # each teacher ran once on each labelled + pool image, not once per step
    assert first.count == 2 * (n_train + 8)
    assert not part.finished and (out / CACHE_FILE).is_file()
    with _TeacherImages() as second:  # resume: epoch 2 reads the cache, no teacher forward
        result = distill(teachers, data, out, cfg)
    assert second.count == 0 and result.finished and len(result.history) == 2
    extra = json.loads((result.bundle_dir / "config.json").read_text())["extra"]["distillation"]
    assert extra["unlabelled_rows"] == 8 and extra["targets"] == "cache"
    assert all(h["train_labelled_share"] < 1.0 for h in result.history)
    # on the fly, the teachers run on every step's augmented batch instead
    with _TeacherImages() as online:
        distill(teachers, data, tmp_path / "online",
                cfg.replace(distill_targets="online", epochs=1))
    assert online.count == 2 * 2 * 8


@pytest.mark.parametrize("spec, message", [
    ("synth://roadwork?n=abc", "unlabelled pool: synth:// option n='abc' is not an integer"),
    ("synth://lanes?n=8&size=tiny", "makes lanes images; the student is a roadwork model"),
    ("no/such/folder", "neither a synth:// URI nor a folder"),
    ("DATA", "shares 24 image(s) with the labelled data"),
])
def test_bad_pool_is_one_line_user_error(ensemble, tmp_path, spec, message):
    data, teachers, cfg = ensemble
    spec = str(data) if spec == "DATA" else spec
    with pytest.raises(UserError) as err:
        distill(teachers, data, tmp_path / "s", cfg.replace(distill_unlabelled=spec))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_pipeline_student_is_calibrated_for_the_runs_lane_bias_objective(tmp_path):
    """The registered model is the student: a run asking for lines-fitted lanes biases must get
    them on the student too, not only on its teachers."""
    from _training import make_lanes

    from roadvision.components.distill import run_distill

    data = make_lanes(tmp_path / "lanes", n=200, size=32)  # 40 val images: enough to fit
    base = TrainConfig.for_profile("tiny", "lanes", epochs=1, max_steps_per_epoch=2)
    teacher = train(data, tmp_path / "t0", base).bundle_dir
    summary = run_distill([teacher], data, tmp_path / "student", task="lanes",
                          training_profile="tiny", epochs=1, max_steps_per_epoch=2,
                          tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                          lane_bias_objective="lines")
    assert summary["calibration"]["bias_objective"] == "lines"
    saved = json.loads((tmp_path / "student" / "config.json").read_text())
    assert saved["extra"]["calibration"]["bias_objective"] == "lines"
