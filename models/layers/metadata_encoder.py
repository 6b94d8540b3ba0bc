"""Metadata encoder: GPS, weather, daytime, scene (and optional text) -> one token.

Every field may be NULL, and NATIX requests carry none of them, so NULL is a *learnt* value
rather than zeros: GPS and text have a learnable NULL vector used where their mask is False,
and each categorical field has an extra embedding row at index ``len(vocab)``. NULL inputs are
also zeroed before any arithmetic, so a NaN in a NULL slot cannot leak into outputs or gradients.

GPS uses multi-frequency sinusoidal features of latitude/longitude in radians (as NeRF/transformer
positional encodings do), which lets a linear layer express both continental and city-scale
patterns. ``field_dropout`` (training only) replaces whole fields by NULL at random so the model
stays good when metadata is missing at serving time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from roadvision.data.contract import VOCABULARIES

__all__ = ["MetadataEncoder", "gps_features", "CATEGORICAL_FIELDS", "TEXT_DIM"]

CATEGORICAL_FIELDS = ("weather", "daytime", "scene")
TEXT_DIM = 384  # all-MiniLM-L6-v2 sentence embedding size


def gps_features(gps: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """[B, 2] degrees -> [B, 4 * num_frequencies] sin/cos features at octave frequencies."""
    radians = gps * (math.pi / 180.0)
    freqs = 2.0 ** torch.arange(num_frequencies, device=gps.device, dtype=gps.dtype)
    angles = radians[..., None] * freqs  # [B, 2, F]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


class MetadataEncoder(nn.Module):
    """Encode a roadwork batch's metadata tensors into a [B, dim] token."""

    def __init__(
        self, dim: int, num_frequencies: int = 8, use_text: bool = False,
        field_dropout: float = 0.0,
    ):
        super().__init__()
        self.num_frequencies = num_frequencies
        self.field_dropout = field_dropout
        self.gps_proj = nn.Sequential(nn.Linear(4 * num_frequencies, dim), nn.GELU(),
                                      nn.Linear(dim, dim))
        self.gps_null = nn.Parameter(torch.zeros(dim))
        self.embeddings = nn.ModuleDict(
            {f: nn.Embedding(len(VOCABULARIES[f]) + 1, dim) for f in CATEGORICAL_FIELDS}
        )
        self.text_proj = nn.Linear(TEXT_DIM, dim) if use_text else None
        self.text_null = nn.Parameter(torch.zeros(dim)) if use_text else None
        self.norm = nn.LayerNorm(dim)
        for p in (self.gps_null, self.text_null):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def _drop(self, mask: torch.Tensor) -> torch.Tensor:
        """Training-time field dropout: turn some present values into NULL."""
        if self.training and self.field_dropout > 0:
            keep = torch.rand(mask.shape, device=mask.device) >= self.field_dropout
            return mask & keep
        return mask

    def forward(self, batch: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        device = self.gps_null.device
        dtype = self.gps_null.dtype
        b = batch_size

        gps = batch.get("gps")
        gps_mask = batch.get("gps_mask")
        if gps is None or gps_mask is None:
            gps = torch.zeros(b, 2, device=device, dtype=dtype)
            gps_mask = torch.zeros(b, dtype=torch.bool, device=device)
        gps_mask = self._drop(gps_mask.bool())
        gps = torch.where(gps_mask[:, None], torch.nan_to_num(gps.to(dtype)), 0.0)
        gps_token = self.gps_proj(gps_features(gps, self.num_frequencies))
        token = torch.where(gps_mask[:, None], gps_token, self.gps_null.expand(b, -1))

        for name, table in self.embeddings.items():
            null = table.num_embeddings - 1
            idx = batch.get(name)
            if idx is None:
                idx = torch.full((b,), null, dtype=torch.long, device=device)
            idx = idx.long()
            if self.training and self.field_dropout > 0:
                idx = torch.where(self._drop(idx != null), idx, null)
            token = token + table(idx)

        if self.text_proj is not None:
            emb = batch.get("text_emb")
            tmask = batch.get("text_mask")
            if emb is None or tmask is None:
                emb = torch.zeros(b, TEXT_DIM, device=device, dtype=dtype)
                tmask = torch.zeros(b, dtype=torch.bool, device=device)
            tmask = self._drop(tmask.bool())
            emb = torch.where(tmask[:, None], torch.nan_to_num(emb.to(dtype)), 0.0)
            token = token + torch.where(tmask[:, None], self.text_proj(emb),
                                        self.text_null.expand(b, -1))
        return self.norm(token)
