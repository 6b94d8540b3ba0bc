"""Training: one loop for both tasks, checkpoints, resumable sampling, distillation,
pseudo-labelling."""

from roadvision.training.config import PROFILES, TrainConfig
from roadvision.training.distill import distill
from roadvision.training.loop import TrainResult
from roadvision.training.pseudo_label import PseudoLabelConfig, RoundReport, pseudo_label_rounds
from roadvision.training.train import train

__all__ = ["TrainConfig", "TrainResult", "train", "distill", "PROFILES", "PseudoLabelConfig",
           "RoundReport", "pseudo_label_rounds"]
