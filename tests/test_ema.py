"""Weight EMA: the average follows its formula, is what a run validates and ships, and resumes
bit-identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _training import make_roadwork

from models.bundle import load_bundle
from roadvision.errors import UserError
from roadvision.training import TrainConfig, train
from roadvision.training.checkpoint import load_checkpoint
from roadvision.training.ema import WeightEma


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_the_average_follows_the_warmed_up_decay_and_copies_integer_buffers():
    net = _net()
    ema = WeightEma(net, decay=0.5)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.add_(2.0)
    net[1].num_batches_tracked += 7
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the start fades fast
    ema.update(net)
    avg = ema.module.state_dict()
    assert torch.allclose(avg["0.weight"], 0.1 * start["0.weight"] + 0.9 * net[0].weight)
    assert torch.allclose(avg["1.running_mean"], start["1.running_mean"] + 0.9 * 2.0)
    assert int(avg["1.num_batches_tracked"]) == 7
    assert torch.equal(avg["0.bias"], start["0.bias"])  # unchanged weights stay put
    # the decay warms up to its ceiling and stays there
    ema.steps = 1000
    assert ema.current_decay() == 0.5
    # the average is a model of its own: training the raw model does not move it
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    assert torch.equal(ema.module[0].weight, before)
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEma(_net(), decay)


def test_the_config_refuses_a_decay_of_one_and_keeps_zero_as_off():
    assert TrainConfig(ema_decay=0.0).ema_decay == 0.0
    with pytest.raises(UserError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.0)


@pytest.fixture(scope="module")
def roadwork_dir(tmp_path_factory) -> Path:
    return make_roadwork(tmp_path_factory.mktemp("rw") / "data", n=32, size=32)


def test_a_run_ships_the_average_and_resumes_it_bit_identically(roadwork_dir, tmp_path):
    cfg = TrainConfig.for_profile("tiny", "roadwork", epochs=3, max_steps_per_epoch=3,
                                  batch_size=6, ema_decay=0.9, patience=0)
    # one epoch: the only epoch is the best, so the bundle is the average at its end
    one = train(roadwork_dir, tmp_path / "one", cfg.replace(epochs=1))
    state = load_checkpoint(tmp_path / "one")
    assert state["ema"]["steps"] == 3  # one update per optimiser step
    raw, avg = state["model"], state["ema"]["module"]
    assert not all(torch.equal(raw[k], avg[k]) for k in raw)  # the average is not the raw run
    shipped = load_bundle(one.bundle_dir).state_dict()
    assert all(torch.equal(shipped[k], avg[k]) for k in avg)
    # killed after epoch 1 and resumed: the same average, bit for bit, as an unbroken run
    full = train(roadwork_dir, tmp_path / "full", cfg)
    train(roadwork_dir, tmp_path / "resumed", cfg.replace(stop_after_epochs=1))
    resumed = train(roadwork_dir, tmp_path / "resumed", cfg)
    assert resumed.finished and len(resumed.history) == 3
    a = load_checkpoint(tmp_path / "full")["ema"]["module"]
    b = load_checkpoint(tmp_path / "resumed")["ema"]["module"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_headline"] for h in resumed.history] == [h["val_headline"]
                                                           for h in full.history]
