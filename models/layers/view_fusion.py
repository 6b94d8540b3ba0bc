"""Gated view fusion: per-view gates, cross-view attention, gate-weighted pooling.

Each view token gets a scalar gate ``sigmoid(MLP(token))`` that says how much it should count.
A learnt query attends over all views (cross-view attention) to build a context vector, and the
views are pooled with their gates as weights; the fused vector is ``[gated pool, context]``
projected back to ``dim``. With ``gated=False`` it is a masked mean over views, the baseline the
ablation compares against.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedViewFusion"]


class GatedViewFusion(nn.Module):
    """Fuse view tokens [B, V, D] (with view_mask [B, V]) into one vector [B, D]."""

    def __init__(self, dim: int, num_heads: int, gated: bool = True, dropout: float = 0.0):
        super().__init__()
        self.gated = gated
        self.last_gate: torch.Tensor | None = None
        if gated:
            self.gate = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim // 2), nn.GELU(),
                                      nn.Linear(dim // 2, 1))
            self.query = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.query, std=0.02)
            self.cross = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
            self.out = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
        valid = view_mask.to(tokens.dtype)[..., None]  # [B, V, 1]
        if not self.gated:
            return (tokens * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        gate = torch.sigmoid(self.gate(tokens)) * valid  # [B, V, 1], padded views 0
        if not torch.compiler.is_compiling():  # attribute writes break compiled graphs
            self.last_gate = gate.detach().squeeze(-1)
        pooled = (tokens * gate).sum(1) / gate.sum(1).clamp_min(1e-6)
        query = self.query.expand(tokens.shape[0], -1, -1)
        context, _ = self.cross(query, tokens, tokens, key_padding_mask=~view_mask,
                                need_weights=False)
        return self.out(torch.cat([pooled, context.squeeze(1)], dim=-1))
