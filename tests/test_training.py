"""The training loop: it learns, resumes bit-identically, stops early, never reads test data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _training import make_lanes, make_roadwork

from roadvision.data.contract import ContractError, read_manifest
from roadvision.errors import UserError
from roadvision.training import TrainConfig, train
from roadvision.training.checkpoint import load_checkpoint
from roadvision.training.sampler import ResumableSampler
from roadvision.training.schedule import warmup_cosine


@pytest.fixture(scope="module")
def roadwork_dir(tmp_path_factory) -> Path:
    return make_roadwork(tmp_path_factory.mktemp("rw") / "data", n=32, size=32)


@pytest.fixture(scope="module")
def lanes_dir(tmp_path_factory) -> Path:
    return make_lanes(tmp_path_factory.mktemp("ln") / "data", n=12, size=64)


def _tiny(task: str, **kw) -> TrainConfig:
    return TrainConfig.for_profile("tiny", task, **kw)


def test_lanes_training_loss_decreases_and_writes_outputs(lanes_dir, tmp_path):
    cfg = _tiny("lanes", epochs=4, augment="none", lr=5e-3, batch_size=4, max_steps_per_epoch=3)
    result = train(lanes_dir, tmp_path, cfg)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    assert (tmp_path / "bundle" / "config.json").is_file()
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"val_headline", "val_miou_no_bg", "val_iou_white_solid", "lr"} <= set(history[0])
    assert result.best_metric == max(h["val_headline"] for h in history)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out)["model"]


def test_kill_and_resume_gives_identical_weights(roadwork_dir, tmp_path):
    # dropout, metadata dropout, augmentation and weighted sampling all draw random numbers:
    # the resumed run must replay exactly the same ones
    cfg = _tiny("roadwork", epochs=3, augment="medium", max_steps_per_epoch=2, batch_size=6)
    full = train(roadwork_dir, tmp_path / "full", cfg)
    part = train(roadwork_dir, tmp_path / "resumed", cfg.replace(stop_after_epochs=1))
    assert not part.finished and len(part.history) == 1
    resumed = train(roadwork_dir, tmp_path / "resumed", cfg)
    assert resumed.finished and len(resumed.history) == 3
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    # and the check can fail: another seed gives other weights
    other = train(roadwork_dir, tmp_path / "other", cfg.replace(seed=1, epochs=1))
    assert other.finished
    c = _weights(tmp_path / "other")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_stops(roadwork_dir, tmp_path):
    # a learning rate this small cannot move the validation metric: patience 1 ends epoch 2
    cfg = _tiny("roadwork", epochs=6, lr=1e-12, patience=1, max_steps_per_epoch=1)
    result = train(roadwork_dir, tmp_path, cfg)
    assert result.stopped_early
    assert len(result.history) == 2
    assert load_checkpoint(tmp_path)["stopped"] is True
    # resuming a stopped run does not train further
    again = train(roadwork_dir, tmp_path, cfg)
    assert len(again.history) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_checkpoint_is_set_aside_and_training_goes_on(roadwork_dir, tmp_path, capfd,
                                                                 damage):
    cfg = _tiny("roadwork", epochs=2, max_steps_per_epoch=1)
    train(roadwork_dir, tmp_path, cfg.replace(stop_after_epochs=1))
    state = tmp_path / "checkpoint" / "state.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    capfd.readouterr()
    result = train(roadwork_dir, tmp_path, cfg)  # used to die in torch.load (OSError)
    assert result.finished and len(result.history) == 2  # restarted from the beginning
    err = capfd.readouterr().err
    assert "checkpoint/state.pt cannot be read" in err and "checkpoint.corrupt-1" in err
    kept = tmp_path / "checkpoint.corrupt-1" / "state.pt"
    assert kept.read_bytes() != data and kept.stat().st_size in (len(data) // 2, 64)
    assert load_checkpoint(tmp_path)["epoch"] == 2  # a fresh, good checkpoint


def test_test_split_is_never_read(tmp_path):
    data = make_roadwork(tmp_path / "data", n=20, size=32)
    df = read_manifest(data)
    for name in df.loc[df["split"] == "test", "image"]:
        (data / name).write_bytes(b"not an image")
    cfg = _tiny("roadwork", epochs=1, max_steps_per_epoch=2)
    train(data, tmp_path / "run", cfg)  # works: test files are never opened
    # the corruption is detectable: the same damage to a val file fails loudly
    val_file = df.loc[df["split"] == "val", "image"].iloc[0]
    (data / val_file).write_bytes(b"not an image")
    with pytest.raises(ContractError, match="cannot read image"):
        train(data, tmp_path / "run2", cfg)


def test_config_errors_are_user_errors(roadwork_dir, tmp_path):
    with pytest.raises(UserError, match="augment"):
        TrainConfig(augment="extreme")
    with pytest.raises(UserError, match="holds 'roadwork'"):
        train(roadwork_dir, tmp_path, TrainConfig(task="lanes", preset="lanes_tiny"))
    with pytest.raises(UserError, match="training profile"):
        TrainConfig.for_profile("huge", "lanes")


def test_sampler_is_weighted_seeded_and_resumable():
    w = np.array([0.0, 0.0, 1.0, 3.0])
    s = ResumableSampler(4, w, num_samples=4000, seed=5)
    s.set_epoch(2)
    draws = np.array(list(s))
    assert set(draws) <= {2, 3}  # zero weight never drawn
    assert 2.6 < (draws == 3).sum() / (draws == 2).sum() < 3.4
    t = ResumableSampler(4, w, num_samples=4000, seed=0)
    t.load_state_dict(s.state_dict())
    assert list(t) == draws.tolist()
    s.set_epoch(3)
    assert list(s) != draws.tolist()
    u = ResumableSampler(5, None, seed=1)
    assert sorted(u) == [0, 1, 2, 3, 4]  # uniform: a permutation
    with pytest.raises(ValueError):
        ResumableSampler(2, [-1.0, 1.0])


def test_schedule_warmup_then_cosine():
    f = [warmup_cosine(s, 4, 20, 0.0) for s in range(20)]
    assert f[0] == pytest.approx(0.25) and f[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    assert f[-1] < 0.05
