"""FPN decoder (Lin et al., "Feature Pyramid Networks", CVPR 2017; smp's FPN "panoptic" head).

Lateral 1x1 convs bring every encoder level to ``channels``; a top-down path adds each coarser
level (upsampled to the finer level's exact size, so any input size works); every level then
goes through conv-GN-ReLU blocks up to the finest level's resolution and the levels are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPNDecoder"]


def _conv_gn_relu(cin: int, cout: int) -> nn.Sequential:
    groups = 32 if cout % 32 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Features fine->coarse (list of [B, C_i, H_i, W_i]) -> [B, channels, H_0, W_0]."""

    def __init__(self, in_channels: list[int], channels: int = 128, dropout: float = 0.0):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(_conv_gn_relu(channels, channels) for _ in in_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        size = laterals[0].shape[-2:]
        merged = sum(
            F.interpolate(block(x), size=size, mode="bilinear", align_corners=False)
            if x.shape[-2:] != size else block(x)
            for block, x in zip(self.smooth, laterals, strict=True)
        )
        return self.dropout(merged)
