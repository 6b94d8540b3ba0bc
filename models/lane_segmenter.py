"""Lane segmenter for aerial tiles: timm encoder -> FPN decoder -> segmentation head.

As in smp's ``SegmentationModel`` the forward is a fixed template (check input, encoder, decoder,
head, upsample to input size); the class only builds its parts. Output logits have the input's
spatial size, for any input size (the decoder resizes to exact skip sizes rather than by fixed
factors). Tiles larger than ``cfg.input_size`` go through sliding-window inference in
``roadvision.models.tta``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from roadvision.data.contract import classes_for

from ._registry import register_model, register_model_class
from .config import ModelConfig
from .encoders import LITE0_WEIGHTS, LITE1_WEIGHTS, LITE2_WEIGHTS, FeatureEncoder
from .layers import FPNDecoder

__all__ = ["LaneSegmenter", "SegmentationHead"]


class SegmentationHead(nn.Sequential):
    """3x3 conv to class logits, then bilinear upsampling to the input size (in forward)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(nn.Conv2d(in_channels, num_classes, 3, padding=1))


@register_model_class
class LaneSegmenter(nn.Module):
    """Encoder-FPN-head segmenter. ``model(batch)`` -> ``{"logits": [B, C, H, W]}``."""

    task = "lanes"

    def __init__(self, cfg: ModelConfig, load_pretrained: bool = True) -> None:
        """
        Args:
            cfg: the model config (``task`` must be "lanes").
            load_pretrained: load ``cfg.encoder_weights``; ``load_bundle`` passes False because
                the bundle's own weights replace them anyway.
        """
        super().__init__()
        if cfg.task != "lanes":
            raise ValueError(f"LaneSegmenter needs task='lanes', got {cfg.task!r}")
        self.cfg = cfg
        self.encoder = FeatureEncoder(
            cfg.encoder,
            weights=cfg.encoder_weights if load_pretrained else "random",
            min_reduction=cfg.decoder_min_reduction,
            drop_path_rate=cfg.drop_path_rate,
        )
        self.decoder = FPNDecoder(self.encoder.out_channels, cfg.decoder_channels,
                                  cfg.decoder_dropout)
        self.segmentation_head = SegmentationHead(self.decoder.out_channels, cfg.num_classes)

    def forward(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        image = batch["image"] if isinstance(batch, dict) else batch
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"lanes image must be [B, 3, H, W], got {tuple(image.shape)}")
        features = self.encoder(image)
        logits = self.segmentation_head(self.decoder(features))
        logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits}


def _create_lanes(variant: str, **kwargs: Any) -> LaneSegmenter:
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is not None:
        kwargs["classes"] = classes_for("lanes", int(num_classes))
    return LaneSegmenter(ModelConfig.from_dict({"task": "lanes", "preset": variant, **kwargs}))


@register_model
def lanes_tiny(**kwargs: Any) -> LaneSegmenter:
    """Tiny random-init FPN on timm's ``test_efficientnet`` (~0.1M params): tests and smoke runs."""
    model_args = dict(encoder="test_efficientnet", encoder_weights="random", input_size=64,
                      decoder_channels=32)
    return _create_lanes("lanes_tiny", **dict(model_args, **kwargs))


@register_model
def lanes_small(**kwargs: Any) -> LaneSegmenter:
    """EfficientNet-Lite0 FPN from offline ImageNet weights, stride-2 features for thin lines."""
    return _create_lanes("lanes_small", **_small_args(kwargs))


@register_model
def lanes_lite1(**kwargs: Any) -> LaneSegmenter:
    """``lanes_small`` on EfficientNet-Lite1 (ImageNet, offline)."""
    kwargs = {"encoder": "efficientnet_lite1", "encoder_weights": LITE1_WEIGHTS, **kwargs}
    return _create_lanes("lanes_lite1", **_small_args(kwargs))


@register_model
def lanes_lite2(**kwargs: Any) -> LaneSegmenter:
    """``lanes_small`` on EfficientNet-Lite2 (ImageNet, offline)."""
    kwargs = {"encoder": "efficientnet_lite2", "encoder_weights": LITE2_WEIGHTS, **kwargs}
    return _create_lanes("lanes_lite2", **_small_args(kwargs))


def _small_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """lanes_small's architecture, with ``kwargs`` on top (the Lite1/2 presets swap the encoder)."""
    model_args = dict(encoder="efficientnet_lite0", encoder_weights=LITE0_WEIGHTS, input_size=256,
                      decoder_channels=64, decoder_min_reduction=2)
    return dict(model_args, **kwargs)
