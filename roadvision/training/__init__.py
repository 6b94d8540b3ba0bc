"""Training: one loop for both tasks, checkpoints, resumable sampling, distillation."""

from roadvision.training.config import PROFILES, TrainConfig
from roadvision.training.distill import distill
from roadvision.training.loop import TrainResult
from roadvision.training.train import train

__all__ = ["TrainConfig", "TrainResult", "train", "distill", "PROFILES"]
