"""Building blocks of roadvision models, one idea per file (timm ``layers/`` style)."""

from .fpn import FPNDecoder
from .gated_attention import GatedAttention, GatedAttentionBlock
from .metadata_encoder import CATEGORICAL_FIELDS, TEXT_DIM, MetadataEncoder, gps_features
from .view_fusion import GatedViewFusion
from .view_pruning import ViewPruning

__all__ = [
    "CATEGORICAL_FIELDS",
    "TEXT_DIM",
    "FPNDecoder",
    "GatedAttention",
    "GatedAttentionBlock",
    "GatedViewFusion",
    "MetadataEncoder",
    "ViewPruning",
    "gps_features",
]
