"""Training's datasets: the runtime's ``ManifestDataset`` plus augmentation, sample weights and
epochs, and the multi-config view of one sample that distillation needs.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: no global RNG is read,
so workers, resumed runs and distillation teachers (which must see the student's augmented
image) all get the same pixels. Validation reads the plain ``ManifestDataset``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from roadvision.data.augment import (
    apply_augment,
    augment_views,
    build_augment,
    build_view_augment,
    lane_crop,
)
from roadvision.runtime.dataset import ManifestDataset

__all__ = ["TrainingDataset", "MultiConfigDataset", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 31-bit seed for one sample of one epoch."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


class TrainingDataset(ManifestDataset):
    """Augmented training samples of one task from manifest ``rows`` (lanes: cropped).

    Args:
        data_dir, rows, model_cfg: as for :class:`ManifestDataset`.
        augment: augmentation level.
        crop_size: lanes training crop (default: ``model_cfg.input_size``).
        lane_crop_p: share of lane crops centred on a lane pixel.
        seed: run seed for the augmentation randomness.
        appearance: strong appearance augmentation groups (``augment.APPEARANCE``).

    An index may come as ``(epoch, index)`` (``loop.EpochTagged``): persistent DataLoader
    workers hold their own copy of the dataset, so the epoch must travel with the index.
    """

    def __init__(
        self,
        data_dir: str | Path,
        rows: pd.DataFrame,
        model_cfg: Any,
        *,
        augment: str = "none",
        crop_size: int | None = None,
        lane_crop_p: float = 0.8,
        seed: int = 0,
        appearance: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, rows, model_cfg)
        self.crop_size = int(crop_size or model_cfg.input_size)
        self.lane_crop_p = lane_crop_p
        self.seed = seed
        self.epoch = 0
        size = model_cfg.input_size if self.task == "lanes" else model_cfg.view_size
        self.pipeline = build_augment(self.task, augment, image_size=size, appearance=appearance)
        self.view_pipeline = build_view_augment(augment) if self.task == "roadwork" else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, tuple):
            self.epoch, index = int(index[0]), int(index[1])
        return super().__getitem__(index)

    def families(self) -> list[str] | None:
        """Each row's scene family (the manifest's ``family`` column), or None when absent."""
        if "family" not in self.rows.columns or self.rows["family"].isna().any():
            return None
        return [str(f) for f in self.rows["family"]]

    def weights(self) -> np.ndarray | None:
        """The ``weight`` column, or None when absent, incomplete or uniform."""
        if "weight" not in self.rows.columns or self.rows["weight"].isna().any():
            return None
        w = self.rows["weight"].to_numpy(dtype=np.float64)
        return None if np.allclose(w, w[0]) else w

    def augment(self, image: np.ndarray, mask: np.ndarray | None, index: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
        seed = sample_seed(self.seed, self.epoch, index)
        if mask is not None:
            rng = np.random.default_rng(seed)
            image, mask = lane_crop(image, mask, self.crop_size, rng, self.lane_crop_p)
        return apply_augment(self.pipeline, image, mask, seed=seed)

    def augment_sample(self, cfg: Any, sample: dict[str, Any], index: int) -> dict[str, Any]:
        if self.view_pipeline is not None and sample["views"].shape[0] > 1:
            sample["views"] = self._augment_views(cfg, sample["views"], index)
        return sample

    def _augment_views(self, cfg: Any, views: torch.Tensor, index: int) -> torch.Tensor:
        # per-view photometric augmentation on the extracted views (denormalise -> uint8 -> back)
        mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std).view(1, 3, 1, 1)
        raw = ((views * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        out = augment_views(self.view_pipeline, raw, seed=sample_seed(self.seed, self.epoch, index))
        back = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0
        return ((back - mean) / std).to(views.dtype)


class MultiConfigDataset(Dataset):
    """One augmented input prepared for a student and for each teacher (distillation).

    Teachers may use other view counts or sizes than the student, so each gets its own
    ``prepare_sample`` of the *same* augmented image; the teachers' samples ride along under
    ``"_teachers"`` and :func:`roadvision.training.loop.collate_batch` batches them.
    """

    def __init__(self, base: TrainingDataset, teacher_cfgs: Sequence[Any]) -> None:
        self.base = base
        self.teacher_cfgs = list(teacher_cfgs)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def weights(self) -> np.ndarray | None:
        return self.base.weights()

    def families(self) -> list[str] | None:
        return self.base.families()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, tuple):
            self.base.epoch, index = int(index[0]), int(index[1])
        image, mask, metadata = self.base.load(index)
        sample = self.base.make_sample(self.base.cfg, image, mask, metadata, index)
        sample["_teachers"] = [self.base.make_sample(c, image, mask, metadata, index)
                               for c in self.teacher_cfgs]
        return sample
