"""What drift is measured on: the model encoder's embeddings, simple image statistics, scores.

Embeddings are the encoder's pooled features of the image as the model sees it, made by the
same ``prepare_sample`` as training and serving: roadwork the global view (view 0, the whole
frame resized), lanes the tile resized to the model's input size. They are what the model's
decisions rest on, so a shift the encoder cannot see is one the model is blind to anyway, and
a shift it sees (fog flattens contrast, night darkens and tints) moves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["IMAGE_STATS", "image_stats", "embed_and_predict"]

#: The image statistics, in column order of :func:`image_stats`.
IMAGE_STATS = ("brightness", "contrast", "colourfulness")
_STATS_SIDE = 128  # statistics on a downsized copy: the same figures, a fraction of the cost


def image_stats(images: Sequence[np.ndarray]) -> np.ndarray:
    """[N, 3]: mean luma (0-255), luma standard deviation (RMS contrast) and Hasler and
    Suesstrunk's colourfulness (2003), per RGB uint8 image."""
    out = np.empty((len(images), len(IMAGE_STATS)), dtype=np.float64)
    for i, image in enumerate(images):
        rgb = _downsized(image).astype(np.float64)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        rg, yb = r - g, 0.5 * (r + g) - b
        colourfulness = (np.hypot(rg.std(), yb.std())
                         + 0.3 * np.hypot(rg.mean(), yb.mean()))
        out[i] = (luma.mean(), luma.std(), colourfulness)
    return out


def _downsized(image: np.ndarray) -> np.ndarray:
    step = max(1, max(image.shape[:2]) // _STATS_SIDE)
    return image[::step, ::step]


def embed_and_predict(model: Any, images: Sequence[np.ndarray],
                      metadata: Sequence[dict[str, Any]] | None = None,
                      batch_size: int = 32, *, with_predictions: bool = True,
                      ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """([N, F] encoder embeddings, per-image predictions as ``runtime.inference.predict``
    gives them without the lanes mask, or [] without ``with_predictions``) for RGB uint8 images
    through ``model`` (a loaded bundle).
    """
    import torch

    from roadvision.models.preprocess import prepare_sample
    from roadvision.runtime.inference import predict

    metadata = metadata or [{}] * len(images)
    embeddings: list[np.ndarray] = []
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        chunk = [prepare_sample(model.cfg, image, meta) for image, meta in
                 zip(images[start:start + batch_size], metadata[start:start + batch_size],
                     strict=True)]
        embeddings.append(_embed(model, chunk, torch))
        for result in predict(model, chunk, batch_size=batch_size) if with_predictions else []:
            result.pop("mask", None)
            predictions.append(result)
    return np.concatenate(embeddings).astype(np.float32), predictions


def _embed(model: Any, samples: list[dict], torch: Any) -> np.ndarray:
    import torch.nn.functional as F

    device = next(model.parameters()).device
    with torch.inference_mode():
        if model.cfg.task == "roadwork":
            x = torch.stack([s["views"][0] for s in samples])  # the global view
            feats = model.encoder(x.to(device))
        else:
            size = int(model.cfg.input_size)
            x = torch.stack([F.interpolate(s["image"][None], size=(size, size), mode="bilinear",
                                           align_corners=False)[0] for s in samples])
            feats = model.encoder(x.to(device))[-1].mean(dim=(-2, -1))  # deepest, pooled
    return feats.float().cpu().numpy()
