"""Multi-view roadwork classifier with metadata.

Pipeline (each stage switchable from ``ModelConfig`` so an ablation can remove it):

1. shared timm encoder on every view ([B, V, 3, S, S] -> [B, V, F]) + projection to ``embed_dim``
   and a learnt view-position embedding (the global view is position 0);
2. ``ViewPruning``: keep the top-k views by a learnt score (``view_pruning``);
3. a metadata token (``use_metadata``) joins the view tokens;
4. ``num_attn_layers`` transformer blocks, gated or not (``gated_attention``);
5. ``GatedViewFusion`` (``gated_fusion``) pools the views; the metadata token is concatenated;
6. heads: the main binary logit, one logit per kept view (for the consistency loss) and weather
   logits (auxiliary task). The weather head reads the *image* tokens before attention: after
   attention they have seen the weather embedding and the task would be trivial.

Outputs are raw logits; ``calibrated_probability`` applies the bundle's temperature and bias.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from roadvision.data.contract import VOCABULARIES

from ._registry import register_model, register_model_class
from .config import ModelConfig
from .encoders import LITE0_WEIGHTS, LITE1_WEIGHTS, LITE2_WEIGHTS, PooledEncoder
from .layers import GatedAttentionBlock, GatedViewFusion, MetadataEncoder, ViewPruning

__all__ = ["RoadworkClassifier"]


@register_model_class
class RoadworkClassifier(nn.Module):
    """``model(batch)`` -> ``{"logits": [B], "view_logits": [B, V'], "view_mask": [B, V'],
    "weather_logits": [B, len(weather vocab)]}`` (raw, uncalibrated)."""

    task = "roadwork"

    def __init__(self, cfg: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        if cfg.task != "roadwork":
            raise ValueError(f"RoadworkClassifier needs task='roadwork', got {cfg.task!r}")
        self.cfg = cfg
        d = cfg.embed_dim
        self.encoder = PooledEncoder(
            cfg.encoder, weights=cfg.encoder_weights if load_pretrained else "random",
            drop_path_rate=cfg.drop_path_rate,
        )
        self.proj = nn.Sequential(nn.Linear(self.encoder.num_features, d), nn.LayerNorm(d))
        self.view_pos = nn.Parameter(torch.zeros(1, max(cfg.num_views, 1), d))
        nn.init.trunc_normal_(self.view_pos, std=0.02)
        self.pruning = ViewPruning(d, cfg.prune_k, enabled=cfg.view_pruning,
                                   keep_global=cfg.prune_keep_global)
        self.metadata = (
            MetadataEncoder(d, cfg.gps_frequencies, use_text=cfg.use_text,
                            field_dropout=cfg.metadata_dropout)
            if cfg.use_metadata else None
        )
        self.blocks = nn.ModuleList(
            GatedAttentionBlock(d, cfg.num_heads, gated=cfg.gated_attention, dropout=cfg.dropout)
            for _ in range(cfg.num_attn_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.fusion = GatedViewFusion(d, cfg.num_heads, gated=cfg.gated_fusion,
                                      dropout=cfg.dropout)
        head_in = 2 * d if self.metadata is not None else d
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(head_in, d), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(d, 1))
        self.view_head = nn.Linear(d, 1)
        self.weather_head = nn.Linear(d, len(VOCABULARIES["weather"]))

    def encode_views(self, views: torch.Tensor) -> torch.Tensor:
        """[B, V, 3, S, S] -> [B, V, D]: one shared encoder pass over all views."""
        b, v = views.shape[:2]
        feats = self.encoder(views.flatten(0, 1))
        tokens = self.proj(feats).view(b, v, -1)
        if v > self.view_pos.shape[1]:
            raise ValueError(f"got {v} views; this model was built for at most "
                             f"{self.view_pos.shape[1]} (cfg.num_views)")
        return tokens + self.view_pos[:, :v]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        views = batch["views"]
        if views.ndim != 5 or views.shape[2] != 3:
            raise ValueError(f"roadwork views must be [B, V, 3, S, S], got {tuple(views.shape)}")
        b, v = views.shape[:2]
        view_mask = batch.get("view_mask")
        if view_mask is None:
            view_mask = torch.ones(b, v, dtype=torch.bool, device=views.device)
        view_mask = view_mask.bool()

        tokens = self.encode_views(views)
        valid = view_mask.to(tokens.dtype)[..., None]
        image_summary = (tokens * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        weather_logits = self.weather_head(image_summary)

        tokens, kept_mask, _, _ = self.pruning(tokens, view_mask)
        n_views = tokens.shape[1]
        meta = None
        if self.metadata is not None:
            meta = self.metadata(batch, b)
            tokens = torch.cat([tokens, meta[:, None]], dim=1)
            attn_mask = torch.cat([kept_mask, kept_mask.new_ones(b, 1)], dim=1)
        else:
            attn_mask = kept_mask
        for block in self.blocks:
            tokens = block(tokens, attn_mask)
        tokens = self.norm(tokens)
        view_tokens = tokens[:, :n_views]

        fused = self.fusion(view_tokens, kept_mask)
        if meta is not None:
            fused = torch.cat([fused, tokens[:, n_views]], dim=-1)
        return {
            "logits": self.head(fused).squeeze(-1),
            "view_logits": self.view_head(view_tokens).squeeze(-1),
            "view_mask": kept_mask,
            "weather_logits": weather_logits,
        }


def _create_roadwork(variant: str, **kwargs: Any) -> RoadworkClassifier:
    return RoadworkClassifier(
        ModelConfig.from_dict({"task": "roadwork", "preset": variant, **kwargs})
    )


@register_model
def roadwork_tiny(**kwargs: Any) -> RoadworkClassifier:
    """Tiny random-init model on 32 px views: tests and smoke runs."""
    model_args = dict(encoder="test_efficientnet", encoder_weights="random", view_size=32,
                      num_views=5, prune_k=3, embed_dim=32, num_heads=2, num_attn_layers=1)
    return _create_roadwork("roadwork_tiny", **dict(model_args, **kwargs))


@register_model
def roadwork_small(**kwargs: Any) -> RoadworkClassifier:
    """EfficientNet-Lite0 (ImageNet, offline) per 224 px view, 12 views pruned to 6, 2 gated
    attention layers, gated fusion and metadata: the teacher / ensemble member."""
    return _create_roadwork("roadwork_small", **_small_args(kwargs))


def _small_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """roadwork_small's architecture, with ``kwargs`` on top (the Lite1/2 presets swap the
    encoder)."""
    model_args = dict(encoder="efficientnet_lite0", encoder_weights=LITE0_WEIGHTS, view_size=224,
                      num_views=12, prune_k=6, embed_dim=192, num_heads=4, num_attn_layers=2)
    return dict(model_args, **kwargs)


@register_model
def roadwork_lite1(**kwargs: Any) -> RoadworkClassifier:
    """``roadwork_small`` on EfficientNet-Lite1 (ImageNet, offline): ~1.3x Lite0's compute."""
    kwargs = {"encoder": "efficientnet_lite1", "encoder_weights": LITE1_WEIGHTS, **kwargs}
    return _create_roadwork("roadwork_lite1", **_small_args(kwargs))


@register_model
def roadwork_lite2(**kwargs: Any) -> RoadworkClassifier:
    """``roadwork_small`` on EfficientNet-Lite2 (ImageNet, offline): ~1.5x Lite0's compute."""
    kwargs = {"encoder": "efficientnet_lite2", "encoder_weights": LITE2_WEIGHTS, **kwargs}
    return _create_roadwork("roadwork_lite2", **_small_args(kwargs))


@register_model
def roadwork_student(**kwargs: Any) -> RoadworkClassifier:
    """Distillation target: same encoder, 5 views of 160 px (global + 4), one attention layer,
    narrower tokens. Most of the cost is the encoder over V views of S^2 pixels, so this does
    ~5x less encoder work than roadwork_small (12 x 224^2 vs 5 x 160^2). It takes its own
    inputs: run ``prepare_sample`` with the student's cfg."""
    model_args = dict(encoder="efficientnet_lite0", encoder_weights=LITE0_WEIGHTS, view_size=160,
                      num_views=5, prune_k=5, view_pruning=False, embed_dim=128, num_heads=4,
                      num_attn_layers=1)
    return _create_roadwork("roadwork_student", **dict(model_args, **kwargs))
