"""Fold each BatchNorm that directly follows a convolution into that convolution, for inference.

In eval mode a BatchNorm is a fixed per-channel affine map, ``y = (x - mean) / sqrt(var + eps)
* gamma + beta``; when ``x`` is a convolution's output nothing else reads, the map can be
multiplied into the convolution's weight and bias once, and the forward skips it (11 % of the
serving forward's self time on a Lite0 encoder, on the CPU). timm's ``BatchNormAct2d`` (BN,
drop and activation in one module) keeps its drop and activation.

Which pairs are folded is read from the code, not guessed from attribute names: every module
that ``torch.fx`` traces (our timm encoders do; a module that does not trace is searched child
by child) gives a graph, and a pair is folded only when the graph calls the BN on the conv's
output and on nothing else, the conv's output goes nowhere else, each of the two is called once
and no hook or other module or graph node touches either. Anything else stays as it was.

A folded model is for inference only: it has fewer modules (its state dict no longer fits the
bundle it came from) and no BN to train, so its forward refuses train mode, and
``load_for_inference`` (``roadvision.runtime.inference``) is the one load path that folds.
Fold before converting the memory format (``PrecisionPolicy.prepare_model``); the folded
weights are fp32 like the originals, so bf16 autocast treats them as before.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.fx as fx
from torch import nn

__all__ = ["fold_batchnorm", "FOLDED_ATTR"]

#: The attribute a folded model carries: how many BatchNorms were folded into its convolutions.
FOLDED_ATTR = "batchnorm_folded"


def _timm_notrace() -> tuple[tuple[type, ...], tuple]:
    # timm marks modules and functions fx must not trace into (e.g. its ``_assert``); honour
    # them, so a timm model traces as timm's own fx feature extraction traces it.
    try:
        from timm.layers import _fx as timm_fx
    except ImportError:  # pragma: no cover - timm is a dependency of every model preset
        return (), ()
    return tuple(timm_fx.get_notrace_modules()), tuple(timm_fx.get_notrace_functions())


def _bn_act_type() -> type | None:
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover
        return None
    return BatchNormAct2d


class _Tracer(fx.Tracer):
    """Convolutions and BatchNorms (timm's BatchNormAct2d included) stay single graph nodes."""

    def __init__(self) -> None:
        leaves, functions = _timm_notrace()
        super().__init__(autowrap_functions=functions)
        self._leaves = (nn.Conv2d, nn.BatchNorm2d, *leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, module_qualified_name)


class _NormActTail(nn.Module):
    """What is left of a folded ``BatchNormAct2d``: its drop, then its activation (same names,
    so an activation with parameters keeps its keys)."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _foldable_conv(m: nn.Module) -> bool:
    # nn.Conv2d and timm's Conv2dSame (pads the input, then the same conv with self.weight and
    # self.bias): the fold touches only weight and bias. Subclasses with other forwards
    # (CondConv2d, mixed convs) are not Conv2d or not listed.
    if type(m) is nn.Conv2d:
        return True
    try:
        from timm.layers import Conv2dSame
    except ImportError:  # pragma: no cover
        return False
    return type(m) is Conv2dSame


def _foldable_bn(m: nn.Module) -> bool:
    # Only the exact classes whose eval forward is the affine map (plus drop, act): a subclass
    # may do anything. Without running statistics a BN normalises by the batch: never foldable.
    if type(m) is not nn.BatchNorm2d and type(m) is not _bn_act_type():
        return False
    return m.running_mean is not None and m.running_var is not None


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def _pairs_in(root: nn.Module, graph: fx.Graph) -> list[tuple[str, str]]:
    """(conv name, bn name) relative to ``root`` for every pair the graph shows in sequence."""
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    attrs = [str(n.target) for n in graph.nodes if n.op == "get_attr"]
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module":
            continue
        if len(source.users) != 1 or len(source.args) != 1 or source.kwargs:
            continue  # the conv's output is read elsewhere too (a skip, a feature tap)
        conv_name, bn_name = str(source.target), str(node.target)
        if calls[conv_name] != 1 or calls[bn_name] != 1:
            continue  # called twice: one module, two inputs
        if any(a == n or a.startswith(n + ".") for a in attrs for n in (conv_name, bn_name)):
            continue  # its weights are read directly somewhere in the graph
        conv, bn = root.get_submodule(conv_name), root.get_submodule(bn_name)
        if not (_foldable_conv(conv) and _foldable_bn(bn)):
            continue
        if _has_hooks(conv) or _has_hooks(bn) or conv.out_channels != bn.num_features:
            continue
        pairs.append((conv_name, bn_name))
    return pairs


def _trace(module: nn.Module) -> fx.Graph | None:
    """``module``'s graph, or None when fx cannot trace it. Tracing runs the Python forward
    on proxies, and a forward may keep something on itself (our attention layers keep
    ``last_gate``): every submodule's plain attributes are put back as they were."""
    saved = [(m, dict(m.__dict__)) for m in module.modules()]
    try:
        return _Tracer().trace(module)
    except Exception:  # fx raises many kinds; a module that does not trace is searched deeper
        return None
    finally:
        for m, attrs in saved:
            m.__dict__.clear()
            m.__dict__.update(attrs)


def _find_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Pairs in ``module`` (names relative to the model): from its own graph when it traces,
    else from each child's. A part without a foldable BN is never traced."""
    if isinstance(module, nn.Conv2d | nn.BatchNorm2d):
        return []  # a lone conv or BN: nothing follows it inside itself
    if not any(_foldable_bn(m) for m in module.modules()):
        return []
    graph = _trace(module)
    if graph is not None:
        return [(prefix + c, prefix + b) for c, b in _pairs_in(module, graph)]
    pairs = []
    for name, child in module.named_children():
        pairs.extend(_find_pairs(child, f"{prefix}{name}."))
    return pairs


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    # fp64 for the product: the folded weights then differ from the unfolded math by fp32
    # rounding alone, whatever the running variance.
    weight = conv.weight
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    shift = bn.bias.double() if bn.bias is not None else torch.zeros_like(scale)
    # empty_like keeps the weight's memory format: folding never decides a layout (that is
    # the precision policy's, which runs after the fold)
    new_weight = torch.empty_like(weight).copy_(weight.double() * scale.view(-1, 1, 1, 1))
    new_bias = ((bias - bn.running_mean.double()) * scale + shift).to(weight.dtype)
    conv.weight = nn.Parameter(new_weight, requires_grad=weight.requires_grad)
    # a bias-free conv (the BN supplied the shift) gets a bias
    conv.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)


def _tail(bn: nn.Module) -> nn.Module:
    """What replaces a folded BN: nothing for a plain BN; a BatchNormAct2d's drop and
    activation, as one module when the drop is the usual Identity (one call less per layer)."""
    if type(bn) is not _bn_act_type():
        return nn.Identity()
    return bn.act if isinstance(bn.drop, nn.Identity) else _NormActTail(bn.drop, bn.act)


def _refuse_training(module: nn.Module, args: tuple) -> None:
    # A forward pre-hook on the folded model's root (module-level, so the model still pickles).
    if module.training:
        raise RuntimeError(
            f"this {type(module).__name__} has its BatchNorms folded into its convolutions "
            "(for inference only) and cannot be trained; load the bundle with load_bundle "
            "to train or fine-tune it")


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; ``(model,
    folded_count)`` like timm's ``apply_test_time_pool``.

    ``model`` must be in eval mode (a ValueError otherwise: a training model's BatchNorms
    normalise by the batch and learn). The folded model answers as before, up to fp32
    rounding, and its forward refuses train mode from then on. Folding twice folds nothing
    more (count 0).
    """
    if model.training:
        raise ValueError("fold_batchnorm: the model is in train mode; folding BatchNorm is for "
                         "inference (call model.eval() first, never on a model being trained)")
    everywhere = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    shared = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    folded = 0
    for conv_name, bn_name in _find_pairs(model):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if everywhere[id(conv)] != 1 or everywhere[id(bn)] != 1:
            continue  # the same module under two names: a use outside the traced graph
        if any(shared[id(p)] != 1 for p in (*conv.parameters(), *bn.parameters())):
            continue  # tied weights: folding would change the other user
        _fold_into(conv, bn)
        parent, _, attr = bn_name.rpartition(".")
        setattr(model.get_submodule(parent), attr, _tail(bn))
        folded += 1
    if not hasattr(model, FOLDED_ATTR):
        model.register_forward_pre_hook(_refuse_training)
    setattr(model, FOLDED_ATTR, getattr(model, FOLDED_ATTR, 0) + folded)
    return model, folded
