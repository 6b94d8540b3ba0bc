"""View pruning: keep the top-k views of an image by a learnt relevance score.

Hard top-k selection has no gradient, so the kept tokens are also multiplied by
``sigmoid(score)``: the scorer learns from the loss through that factor (views that help the
prediction get their score raised), in the spirit of DynamicViT-style token pruning. In training
the selection is sampled (Gumbel-top-k) so that low-ranked views are still kept now and then
and can earn a higher score; in eval it is the deterministic top-k. Padded views
(``view_mask`` False) are never preferred over real ones, and with ``keep_global`` the global
view (index 0) always survives, because small images have only that view and it alone shows
the whole scene.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ViewPruning"]


class ViewPruning(nn.Module):
    """Score views, keep the ``k`` best, and scale each kept view by ``sigmoid(score)``.

    Shape:
        tokens: [B, V, D]; view_mask: [B, V] bool (True = real view).
        Returns (tokens [B, V', D], view_mask [B, V'], index [B, V'], scores [B, V]) with
        V' = min(k, V); when ``enabled`` is False nothing is dropped or scaled.
    """

    def __init__(self, dim: int, k: int, enabled: bool = True, keep_global: bool = True):
        super().__init__()
        self.k = k
        self.enabled = enabled
        self.keep_global = keep_global
        self.scorer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1)) if enabled else None

    def forward(
        self, tokens: torch.Tensor, view_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b, v, _ = tokens.shape
        index = torch.arange(v, device=tokens.device).expand(b, v)
        if self.scorer is None:
            return tokens, view_mask, index, torch.zeros(b, v, device=tokens.device)
        scores = self.scorer(tokens).squeeze(-1)  # [B, V]
        key = scores.detach()
        if self.training:
            # Gumbel-top-k: sample k views without replacement in proportion to softmax(score).
            # A plain top-k never keeps a view the scorer ranks low, so that view's score never
            # gets a gradient and an early bad ranking sticks; eval keeps the exact top-k.
            uniform = torch.rand_like(key).clamp_(1e-6, 1.0 - 1e-6)
            key = key - torch.log(-torch.log(uniform))
        # Selection key: padded views last, the global view first when it must be kept.
        key = key.masked_fill(~view_mask, float("-inf"))
        if self.keep_global:
            key[:, 0] = float("inf")
        k = min(self.k, v)
        index = key.topk(k, dim=1).indices.sort(dim=1).values  # keep the original view order
        kept = tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))
        weight = torch.sigmoid(scores.gather(1, index))
        mask = view_mask.gather(1, index)
        kept = kept * (weight * mask)[..., None]
        return kept, mask, index, scores
