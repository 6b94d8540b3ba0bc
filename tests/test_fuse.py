"""BatchNorm folding for inference (``roadvision.runtime.fuse``): the same answers for every
model preset, fewer modules, and nothing folded that is not provably conv -> BN."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from _models import lanes_batch, roadwork_batch
from torch import nn

from roadvision.models import create_model, list_models, load_bundle, save_bundle
from roadvision.runtime.fuse import FOLDED_ATTR, fold_batchnorm
from roadvision.runtime.inference import LOGITS, forward_batch, load_for_inference


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Two cores shared with other jobs: one intra-op thread keeps the presets' builds quick.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    # Running statistics and affine parameters away from their init (mean 0, var 1, gamma 1,
    # beta 0), where a fold that dropped any of them would still match.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _preset(name: str) -> nn.Module:
    # input_size only sets the lanes window (no padding of the 64 px test tiles up to 256);
    # the architecture is the preset's own.
    extra = {"input_size": 64} if name.startswith("lanes") else {}
    return _randomise_bn(create_model(name, encoder_weights="random", **extra))


@pytest.mark.parametrize("name", list_models())
def test_every_preset_answers_the_same_folded(name):
    model = _preset(name)
    lanes = model.cfg.task == "lanes"
    batch = lanes_batch() if lanes else roadwork_batch(v=3, size=32)
    enc_in = batch["image"] if lanes else batch["views"].flatten(0, 1)
    with torch.no_grad():
        feats = model.encoder(enc_in)
    before = forward_batch(model, batch, LOGITS if lanes else "none")
    logits_before = forward_batch(model, batch, LOGITS)
    n_bn = _count_bn(model)

    folded, count = fold_batchnorm(model)

    assert folded is model and getattr(model, FOLDED_ATTR) == count
    assert count > 0 and count == n_bn  # every BN of the timm encoders follows a conv
    assert _count_bn(model) == 0
    after = forward_batch(model, batch, LOGITS if lanes else "none")  # lanes logits / prob
    torch.testing.assert_close(after, before, rtol=0, atol=1e-4)
    torch.testing.assert_close(forward_batch(model, batch, LOGITS), logits_before,
                               rtol=0, atol=1e-4)
    with torch.no_grad():  # the encoder's own output, every level: fp32 rounding only (the
        # deepest encoders' last level differs by ~1e-5 of its norm, as the unfolded fp32
        # forward does from fp64 math: test_folded_is_as_close_to_exact_math_as_unfolded)
        for a, b in zip(model.encoder(enc_in) if lanes else [model.encoder(enc_in)],
                        feats if lanes else [feats], strict=True):
            assert float((a - b).norm() / b.norm()) < 5e-5


def test_folded_is_as_close_to_exact_math_as_unfolded():
    model = _preset("lanes_lite1")  # the deepest encoder
    x = lanes_batch()["image"]
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        ref = exact.encoder(x.double())
        unfolded = model.encoder(x)
        fold_batchnorm(model)
        folded = model.encoder(x)
    for r, u, f in zip(ref, unfolded, folded, strict=True):
        err_u = float((u.double() - r).norm() / r.norm())
        err_f = float((f.double() - r).norm() / r.norm())
        assert err_f < 2 * err_u + 1e-7 and err_f < 5e-5


def test_train_mode_is_refused_and_untouched():
    model = _preset("lanes_tiny").train()
    n_bn = _count_bn(model)
    with pytest.raises(ValueError, match="train mode"):
        fold_batchnorm(model)
    assert _count_bn(model) == n_bn and not hasattr(model, FOLDED_ATTR)


def test_a_folded_model_refuses_training_and_folds_nothing_twice():
    model = _preset("roadwork_tiny")
    batch = roadwork_batch(v=2)
    fold_batchnorm(model)
    with torch.no_grad():
        once = model(batch)["logits"]
    assert fold_batchnorm(model)[1] == 0
    with torch.no_grad():
        assert torch.equal(model(batch)["logits"], once)
    model.train()
    with pytest.raises(RuntimeError, match="cannot be trained"):
        model(batch)
    # still picklable and copyable (the refusing hook is a module-level function)
    clone = pickle.loads(pickle.dumps(copy.deepcopy(model.eval())))
    with torch.no_grad():
        assert torch.equal(clone(batch)["logits"], once)


def test_a_bias_free_conv_gets_the_bn_shift_as_bias():
    model = _preset("lanes_tiny")
    stem = model.encoder.model.conv_stem
    assert stem.bias is None
    fold_batchnorm(model)
    assert stem.bias is not None and stem.bias.abs().sum() > 0
    assert isinstance(model.encoder.model.bn1, nn.Module) and not isinstance(
        model.encoder.model.bn1, nn.BatchNorm2d)


class _ConvBN(nn.Module):
    def __init__(self, bn: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = bn if bn is not None else nn.BatchNorm2d(4)


class _Sequential(_ConvBN):
    def forward(self, x):
        self.last = x  # a forward that keeps something on itself (as our attention layers do)
        return self.bn(self.conv(x))


class _ConvOutputReused(_ConvBN):
    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the conv's output is read past the BN


class _BNTwice(_ConvBN):
    def forward(self, x):
        return self.bn(self.conv(x)) + self.bn(x.repeat(1, 2, 1, 1)[:, :4])


class _Untraceable(nn.Module):
    """A forward fx cannot trace (data-dependent branch) around a conv -> BN child."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))

    def forward(self, x):
        if x.mean() > 100:  # never true here: fx raises on it
            return x
        return self.inner(x)


def _check(module: nn.Module, expected: int) -> None:
    module = _randomise_bn(module, seed=3)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = module(x)
    assert fold_batchnorm(module)[1] == expected
    with torch.no_grad():
        torch.testing.assert_close(module(x), before, rtol=1e-5, atol=1e-5)


def test_only_provably_sequential_pairs_are_folded():
    _check(_Sequential(), 1)
    seq = _Sequential().eval()
    seq.last = None
    assert fold_batchnorm(seq)[1] == 1
    assert seq.last is None  # tracing's proxy was not left on the module
    _check(_ConvOutputReused(), 0)
    _check(_BNTwice(), 0)
    _check(_Untraceable(), 1)  # its child traces on its own
    _check(_Sequential(nn.BatchNorm2d(4, track_running_stats=False)), 0)  # batch statistics

    class _SubclassBN(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2

    _check(_Sequential(_SubclassBN(4)), 0)  # a BN subclass may do anything
    hooked = _Sequential()
    taps = []
    hooked.conv.register_forward_hook(lambda m, i, o: taps.append(o))  # a feature tap
    _check(hooked, 0)


def test_folding_then_channels_last_and_bf16_autocast_match():
    # The CUDA policy's path (fold, then channels-last weights and images, bf16 autocast),
    # run here on the CPU, which has both.
    model = _preset("lanes_tiny")
    batch = lanes_batch()["image"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(batch)["logits"].float()
    fold_batchnorm(model)
    model.to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch.contiguous(memory_format=torch.channels_last))["logits"].float()
    scale = ref.abs().max()
    assert (out - ref).abs().max() < 0.05 * scale  # bf16 rounding, not a wrong fold


def test_folding_keeps_the_weights_memory_format():
    model = _preset("lanes_tiny").to(memory_format=torch.channels_last)
    x = lanes_batch()["image"]
    with torch.no_grad():
        ref = model(x)["logits"]
    fold_batchnorm(model)
    stem = model.encoder.model.conv_stem.weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], ref, rtol=0, atol=1e-4)


def test_load_for_inference_folds_and_load_bundle_does_not(tmp_path):
    model = _randomise_bn(create_model("roadwork_tiny", view_mode="multi"))
    path = save_bundle(model, tmp_path / "b")
    batch = roadwork_batch(v=2)
    plain, served = load_bundle(path), load_for_inference(path)
    assert not hasattr(plain, FOLDED_ATTR) and _count_bn(plain) > 0
    assert getattr(served, FOLDED_ATTR) > 0 and _count_bn(served) == 0
    assert not served.training and served.bundle_config == plain.bundle_config
    torch.testing.assert_close(forward_batch(served, batch), forward_batch(plain, batch),
                               rtol=0, atol=1e-5)
    # a folded model's weights no longer fit its class: saving it is refused in one line
    from roadvision.errors import UserError

    with pytest.raises(UserError, match="loaded for inference"):
        save_bundle(served, tmp_path / "resaved")
    assert not (tmp_path / "resaved").exists()
