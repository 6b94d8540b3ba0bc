"""roadvision models: encoders (timm), lane segmenter, roadwork classifier, losses, TTA,
calibration and the model bundle.

Importing this package registers every preset (timm-style), so ``create_model(name)`` and
``list_models()`` see them all.
"""

from roadvision.torch_compat import ensure_torchvision

ensure_torchvision()  # before anything imports timm (which imports torchvision)

from ._factory import create_model  # noqa: E402
from ._registry import (  # noqa: E402
    is_model,
    list_models,
    model_class,
    model_entrypoint,
    register_model,
    register_model_class,
)
from .bundle import bundle_version, load_bundle, save_bundle, update_bundle_config  # noqa: E402
from .calibration import calibrated_probability  # noqa: E402
from .config import ModelConfig  # noqa: E402
from .ensemble import LogitEnsemble  # noqa: E402
from .lane_segmenter import LaneSegmenter  # noqa: E402  (registers the lanes presets)
from .losses import create_loss  # noqa: E402
from .preprocess import collate, prepare_sample  # noqa: E402
from .roadwork_classifier import RoadworkClassifier  # noqa: E402  (registers presets)
from .tta import run_tta  # noqa: E402

__all__ = [
    "ModelConfig",
    "LaneSegmenter",
    "LogitEnsemble",
    "RoadworkClassifier",
    "bundle_version",
    "calibrated_probability",
    "collate",
    "create_loss",
    "create_model",
    "is_model",
    "list_models",
    "load_bundle",
    "model_class",
    "model_entrypoint",
    "prepare_sample",
    "register_model",
    "register_model_class",
    "run_tta",
    "save_bundle",
    "update_bundle_config",
]
