"""Gated attention block: a sigmoid gate computed from the layer input scales the attention output.

Reference: Qiu et al., "Gated Attention for Large Language Models: Non-linearity, Sparsity, and
Attention-Sink-Free" (Qwen team, arXiv 2505.06708). Their best variant gates the output of scaled
dot-product attention, per head and channel, with ``sigmoid(x W_g)`` where ``x`` is the
(normalised) layer input, before the output projection. The gate adds a non-linearity between
the value and output projections and lets a token switch attention off instead of parking it on
an "attention sink". With ``gated=False`` the block is a plain pre-norm transformer block, which
is what the ablation compares against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GatedAttention", "GatedAttentionBlock"]


class GatedAttention(nn.Module):
    """Multi-head self-attention with an optional input-conditioned sigmoid output gate.

    Shape:
        x: [B, N, D]; key_padding_mask: [B, N] bool, True = valid token. Returns [B, N, D].
    """

    def __init__(self, dim: int, num_heads: int, gated: bool = True, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.gate = nn.Linear(dim, dim) if gated else None
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.last_gate: torch.Tensor | None = None  # kept for inspection (tests, analysis)
        if self.gate is not None:
            # Start half-open (sigmoid(0)=0.5 everywhere) so early training sees every view.
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = key_padding_mask[:, None, None, :]  # broadcast over heads and queries
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(b, n, d)
        if self.gate is not None:
            gate = torch.sigmoid(self.gate(x))  # from the layer input, not from the attention
            if not torch.compiler.is_compiling():  # attribute writes break compiled graphs
                self.last_gate = gate.detach()
            out = out * gate
        return self.proj(out)


class GatedAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN x)`` then ``x + MLP(LN x)``."""

    def __init__(
        self, dim: int, num_heads: int, gated: bool = True, mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GatedAttention(dim, num_heads, gated=gated, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_padding_mask)
        return x + self.mlp(self.norm2(x))
