"""``ManifestDataset``: model-ready samples of one task from manifest rows, unaugmented.

Validation, evaluation, calibration, error analysis and the benchmarks read data through it;
training's augmented dataset (``roadvision.training.datasets``) extends it through the two
hooks :meth:`ManifestDataset.augment` and :meth:`ManifestDataset.augment_sample`. Every sample
goes through ``roadvision.models.preprocess.prepare_sample``, the one place raw inputs become
model inputs, so training and evaluation see exactly what serving sees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from roadvision.data.contract import ContractError
from roadvision.models.preprocess import prepare_sample

from .readers import read_image, read_mask, row_metadata

__all__ = ["ManifestDataset"]

ImageHook = Callable[[np.ndarray, int], np.ndarray]


class ManifestDataset(Dataset):
    """Samples of one task from manifest ``rows``, full images, no randomness.

    Args:
        data_dir: the dataset folder (paths in ``rows`` are relative to it).
        rows: manifest rows (see :func:`roadvision.runtime.readers.load_rows`).
        model_cfg: the ``ModelConfig`` that ``prepare_sample`` follows.
        image_hook: optional ``f(image, index) -> image`` applied to the raw pixels (the NATIX
            protocol and error analysis use it to transform inputs without a second dataset).
        with_metadata: False drops every metadata field (NATIX sends none).
    """

    def __init__(
        self,
        data_dir: str | Path,
        rows: pd.DataFrame,
        model_cfg: Any,
        *,
        image_hook: ImageHook | None = None,
        with_metadata: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.rows = rows.reset_index(drop=True)
        # plain dicts: pandas row access costs more than decoding a small PNG
        self._records = self.rows.to_dict("records")
        self.cfg = model_cfg
        self.task = model_cfg.task
        self.image_hook = image_hook
        self.with_metadata = with_metadata
        if self.task == "roadwork" and self.rows["label"].isna().any():
            raise ContractError(f"{data_dir}: roadwork rows without a label")
        if self.task == "lanes" and self.rows["mask"].isna().any():
            raise ContractError(f"{data_dir}: lanes rows without a mask")

    def __len__(self) -> int:
        return len(self.rows)

    def augment(self, image: np.ndarray, mask: np.ndarray | None, index: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Hook on the raw pixels before ``image_hook``: none here (training overrides it)."""
        return image, mask

    def augment_sample(self, cfg: Any, sample: dict[str, Any], index: int) -> dict[str, Any]:
        """Hook on the prepared sample: none here (training augments roadwork views)."""
        return sample

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any] | None]:
        """Raw (image, mask, metadata) of row ``index``, after ``augment`` and ``image_hook``."""
        row = self._records[index]
        image = read_image(self.data_dir, row["image"])
        mask = read_mask(self.data_dir, row["mask"]) if self.task == "lanes" else None
        image, mask = self.augment(image, mask, index)
        if self.image_hook is not None:
            image = self.image_hook(image, index)
        metadata = row_metadata(row) if self.with_metadata else None
        return image, mask, metadata

    def make_sample(self, cfg: Any, image: np.ndarray, mask: np.ndarray | None,
                    metadata: dict[str, Any] | None, index: int) -> dict[str, Any]:
        """``prepare_sample`` for ``cfg`` (not necessarily this dataset's: distillation prepares
        one loaded image for every teacher), plus the roadwork label."""
        sample = self.augment_sample(cfg, prepare_sample(cfg, image, metadata, mask=mask), index)
        if self.task == "roadwork":
            sample["label"] = torch.tensor(float(self._records[index]["label"]))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, metadata = self.load(index)
        return self.make_sample(self.cfg, image, mask, metadata, index)
