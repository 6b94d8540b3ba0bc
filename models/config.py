"""``ModelConfig``: everything a model needs besides its weights, carried by the model itself.

Like timm's ``PretrainedCfg`` the model carries its preprocessing contract (sizes, mean/std,
classes) so that training, evaluation and serving read it instead of hard-coding values. It also
carries the switches that build the architecture (for ablations) and the calibration learnt on
validation. ``save_bundle`` writes it to ``config.json``; ``load_bundle`` rebuilds the model
from it, so every field must be JSON-serialisable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from roadvision.errors import UserError

__all__ = ["ModelConfig", "IMAGENET_MEAN", "IMAGENET_STD", "TASKS", "VIEW_MODES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TASKS = ("lanes", "roadwork")
#: How a roadwork model cuts an image into views (``roadvision.data.multiview``):
#: "single": always the one global view, whatever the input size (num_views is 1);
#: "multi": the multiview cut, ``num_views`` views for an image larger than twice view_size,
#: the global view alone below that;
#: "auto": not decided yet. Training decides it from the training images and stores "single"
#: or "multi" in the bundle; a bundle that still says "auto" (or predates the field) keeps the
#: multiview cut, with a warning when it is loaded (``models.bundle.load_bundle``).
VIEW_MODES = ("auto", "single", "multi")


@dataclass
class ModelConfig:
    """Architecture switches, preprocessing contract and calibration of one model."""

    # --- identity
    task: str = "roadwork"  # "lanes" or "roadwork"
    preset: str = ""  # registry name the config came from ("" when built by hand)
    classes: list[str] = field(default_factory=list)  # class names, index = class id

    # --- preprocessing contract (read by prepare_sample, TTA and serving)
    input_size: int = 256  # lanes: training crop; larger tiles use sliding-window inference
    view_size: int = 224  # roadwork: side of each square view
    num_views: int = 12  # roadwork: views extracted from a large image (global view first)
    view_mode: str = "auto"  # roadwork: "single", "multi" or "auto" (VIEW_MODES), see above
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    # --- encoder (timm)
    encoder: str = "efficientnet_lite0"  # any timm model name
    encoder_weights: str = "random"  # "random", "imagenet-lite0/1/2", or a local weights file
    drop_path_rate: float = 0.0  # stochastic depth inside the encoder (ensemble diversity)

    # --- lanes decoder
    decoder_channels: int = 128  # FPN pyramid width
    decoder_min_reduction: int = 4  # finest encoder stride fed to the FPN (2 keeps thin lines)
    decoder_dropout: float = 0.1

    # --- roadwork head (each part can be switched off for ablations)
    embed_dim: int = 192  # width of view/metadata tokens
    num_heads: int = 4
    num_attn_layers: int = 2  # 0 = no cross-view attention layers
    gated_attention: bool = True  # sigmoid gate from the layer input on the attention output
    view_pruning: bool = True  # keep only the top-k views by a learnt score
    prune_k: int = 6
    prune_keep_global: bool = True  # the global view (index 0) is always kept
    gated_fusion: bool = True  # view gates + cross-view attention pooling; False = mean pool
    use_metadata: bool = True  # GPS + weather/daytime/scene embeddings (learnable NULL)
    use_text: bool = False  # add a MiniLM text embedding (prepare_sample computes it)
    gps_frequencies: int = 8  # sinusoidal GPS features per coordinate
    metadata_dropout: float = 0.1  # training only: each field replaced by NULL with this rate
    dropout: float = 0.1

    # --- calibration (fitted on validation by roadvision.evaluation.calibrate)
    temperature: float = 1.0  # p = sigmoid(logit / temperature + logit_bias)
    logit_bias: float = 0.0
    threshold: float = 0.5  # decision threshold applied to the calibrated probability
    # lanes: the class mask is argmax(log p + class_bias), one bias per class (background's 0),
    # fitted on validation to maximise each lane class's IoU; [] = plain argmax
    class_bias: list[float] = field(default_factory=list)

    # --- lanes post-processing (roadvision.runtime.inference.lane_mask)
    min_segment_m: float = 0.0  # drop lane pieces shorter than this, metres at extra.gsd_m; 0 = off

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"task {self.task!r} is not one of {TASKS}")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.classes = [str(c) for c in self.classes]
        if not self.classes:
            from roadvision.data.contract import classes_for

            self.classes = classes_for(self.task)
        if self.view_mode not in VIEW_MODES:
            raise UserError(f"view_mode {self.view_mode!r} is not one of {VIEW_MODES}")
        if self.view_mode == "single":
            self.num_views = 1  # one global view: the view embedding holds one position
        elif self.view_mode == "multi" and self.num_views < 2:
            raise UserError(f"view_mode 'multi' needs num_views >= 2, got {self.num_views}")
        if self.temperature <= 0:
            raise UserError(f"temperature must be > 0, got {self.temperature}")
        self.class_bias = [float(b) for b in self.class_bias]
        if self.class_bias and len(self.class_bias) != len(self.classes):
            raise UserError(f"class_bias has {len(self.class_bias)} values for "
                            f"{len(self.classes)} classes")
        if not self.min_segment_m >= 0:
            raise UserError(f"min_segment_m must be >= 0, got {self.min_segment_m}")
        if self.task == "roadwork" and self.embed_dim % self.num_heads:
            raise UserError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from ``to_dict()`` output; unknown keys are an error naming the valid ones."""
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise UserError(
                f"unknown model config key(s) {unknown}; valid keys: {cls.field_names()}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied (unknown keys raise UserError)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})
