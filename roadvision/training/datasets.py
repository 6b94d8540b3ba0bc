"""Torch datasets over the data contract, for training, validation, evaluation and distillation.

Rows are chosen by split *before* any file is opened (``load_rows``): a run asked for
train/val never touches a test image, which ``tests/test_training.py`` checks by corrupting the
test files. Every sample goes through ``roadvision.models.preprocess.prepare_sample``, the one
place raw inputs become model inputs, so training sees exactly what serving sees.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: no global RNG is read,
so workers, resumed runs and distillation teachers (which must see the student's augmented
image) all get the same pixels.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from roadvision.data.augment import (
    apply_augment,
    augment_views,
    build_augment,
    build_view_augment,
    lane_crop,
)
from roadvision.data.confine import PathRefused, read_confined
from roadvision.data.contract import ContractError, read_manifest
from roadvision.errors import UserError

__all__ = ["load_rows", "row_metadata", "ManifestDataset", "MultiConfigDataset", "read_image",
           "read_mask", "sample_seed"]

SPLITS = ("train", "val", "test")


def load_rows(data_dir: str | Path, splits: Sequence[str] | None) -> pd.DataFrame:
    """Manifest rows of ``splits`` (None = every row), with their original order kept."""
    df = read_manifest(data_dir)
    if splits is None:
        return df.reset_index(drop=True)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise UserError(f"unknown split(s) {bad}; expected some of {SPLITS}")
    if "split" not in df.columns:
        raise UserError(
            f"{data_dir}: the manifest has no 'split' column; run `roadvision data split` first"
        )
    rows = df[df["split"].isin(list(splits))].reset_index(drop=True)
    if rows.empty:
        raise UserError(f"{data_dir}: no rows in split(s) {list(splits)}")
    return rows


def _value(row: Any, name: str) -> Any:
    value = row.get(name, None)
    missing = value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
    return None if missing else value


def row_metadata(row: Any) -> dict[str, Any]:
    """The metadata dict ``prepare_sample`` takes (NULL = None)."""
    lat, lon = _value(row, "lat"), _value(row, "lon")
    return {
        "gps": (float(lat), float(lon)) if lat is not None and lon is not None else None,
        "weather": _value(row, "weather"),
        "daytime": _value(row, "daytime"),
        "scene": _value(row, "scene"),
        "text": _value(row, "text"),
    }


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 31-bit seed for one sample of one epoch."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def _read_bytes(root: str | Path, rel: Any) -> bytes:
    """A data set file's bytes through ``data.confine``: never through a symbolic link, never
    outside ``root``; a ContractError naming the file otherwise."""
    try:
        data = read_confined(root, rel)
    except PathRefused as exc:
        raise ContractError(f"{root}: {exc.reason}: {exc}") from None
    if data is None:
        raise ContractError(f"{root}: file {rel} does not exist")
    return data


def read_image(root: str | Path, rel: Any) -> np.ndarray:
    """The RGB pixels of the data set file ``root/rel`` (confined, see ``_read_bytes``)."""
    data = _read_bytes(root, rel)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{root}/{rel}: cannot read image ({exc})") from exc


def read_mask(root: str | Path, rel: Any) -> np.ndarray:
    """The class-id mask ``root/rel`` (confined, see ``_read_bytes``)."""
    data = _read_bytes(root, rel)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise ContractError(f"{root}/{rel}: cannot read mask ({exc})") from exc


class ManifestDataset(Dataset):
    """Samples of one task from manifest ``rows``.

    Args:
        data_dir: the dataset folder (paths in ``rows`` are relative to it).
        rows: manifest rows (see :func:`load_rows`).
        model_cfg: the ``ModelConfig`` that ``prepare_sample`` follows.
        train: augment and (lanes) crop; otherwise full images, no randomness.
        augment: augmentation level.
        crop_size: lanes training crop (default: ``model_cfg.input_size``).
        lane_crop_p: share of lane crops centred on a lane pixel.
        seed: run seed for the augmentation randomness.
        image_hook: optional ``f(image, index) -> image`` applied after augmentation (the NATIX
            protocol and error analysis use it to transform inputs without a second dataset).
        with_metadata: False drops every metadata field (NATIX sends none).
    """

    def __init__(
        self,
        data_dir: str | Path,
        rows: pd.DataFrame,
        model_cfg: Any,
        *,
        train: bool = False,
        augment: str = "none",
        crop_size: int | None = None,
        lane_crop_p: float = 0.8,
        seed: int = 0,
        image_hook: Any = None,
        with_metadata: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.rows = rows.reset_index(drop=True)
        # plain dicts: pandas row access costs more than decoding a small PNG
        self._records = self.rows.to_dict("records")
        self.cfg = model_cfg
        self.task = model_cfg.task
        self.train = train
        self.crop_size = int(crop_size or model_cfg.input_size)
        self.lane_crop_p = lane_crop_p
        self.seed = seed
        self.epoch = 0
        self.image_hook = image_hook
        self.with_metadata = with_metadata
        size = model_cfg.input_size if self.task == "lanes" else model_cfg.view_size
        self.pipeline = build_augment(self.task, augment, image_size=size) if train else None
        self.view_pipeline = (build_view_augment(augment)
                              if train and self.task == "roadwork" else None)
        if self.task == "roadwork" and self.rows["label"].isna().any():
            raise ContractError(f"{data_dir}: roadwork rows without a label")
        if self.task == "lanes" and self.rows["mask"].isna().any():
            raise ContractError(f"{data_dir}: lanes rows without a mask")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def weights(self) -> np.ndarray | None:
        """The ``weight`` column, or None when absent, incomplete or uniform."""
        if "weight" not in self.rows.columns or self.rows["weight"].isna().any():
            return None
        w = self.rows["weight"].to_numpy(dtype=np.float64)
        return None if np.allclose(w, w[0]) else w

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any] | None]:
        """Raw (image, mask, metadata) of row ``index``, after augmentation when training."""
        row = self._records[index]
        image = read_image(self.data_dir, row["image"])
        mask = read_mask(self.data_dir, row["mask"]) if self.task == "lanes" else None
        seed = sample_seed(self.seed, self.epoch, index)
        if self.train:
            if mask is not None:
                rng = np.random.default_rng(seed)
                image, mask = lane_crop(image, mask, self.crop_size, rng, self.lane_crop_p)
            image, mask = apply_augment(self.pipeline, image, mask, seed=seed)
        if self.image_hook is not None:
            image = self.image_hook(image, index)
        metadata = row_metadata(row) if self.with_metadata else None
        return image, mask, metadata

    def make_sample(self, cfg: Any, image: np.ndarray, mask: np.ndarray | None,
                    metadata: dict[str, Any] | None, index: int) -> dict[str, Any]:
        from roadvision.models.preprocess import prepare_sample

        sample = prepare_sample(cfg, image, metadata, mask=mask)
        if self.view_pipeline is not None and sample["views"].shape[0] > 1:
            sample["views"] = self._augment_views(cfg, sample["views"], index)
        if self.task == "roadwork":
            sample["label"] = torch.tensor(float(self._records[index]["label"]))
        return sample

    def _augment_views(self, cfg: Any, views: torch.Tensor, index: int) -> torch.Tensor:
        # per-view photometric augmentation on the extracted views (denormalise -> uint8 -> back)
        mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std).view(1, 3, 1, 1)
        raw = ((views * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        out = augment_views(self.view_pipeline, raw, seed=sample_seed(self.seed, self.epoch, index))
        back = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0
        return ((back - mean) / std).to(views.dtype)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, metadata = self.load(index)
        return self.make_sample(self.cfg, image, mask, metadata, index)


class MultiConfigDataset(Dataset):
    """One augmented input prepared for a student and for each teacher (distillation).

    Teachers may use other view counts or sizes than the student, so each gets its own
    ``prepare_sample`` of the *same* augmented image; the teachers' samples ride along under
    ``"_teachers"`` and :func:`roadvision.training.loop.collate_batch` batches them.
    """

    def __init__(self, base: ManifestDataset, teacher_cfgs: Sequence[Any]) -> None:
        self.base = base
        self.teacher_cfgs = list(teacher_cfgs)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def weights(self) -> np.ndarray | None:
        return self.base.weights()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, metadata = self.base.load(index)
        sample = self.base.make_sample(self.base.cfg, image, mask, metadata, index)
        sample["_teachers"] = [self.base.make_sample(c, image, mask, metadata, index)
                               for c in self.teacher_cfgs]
        return sample
