"""The NATIX StreetVision validator's queries and scores, reproduced for offline evaluation.

Everything here follows natixnetwork/streetvision-subnet (main, commit 28a1755):

- ``natix/validator/forward.py``: each query first draws its label (0 or 1, equally likely),
  then an image of that label, then augments it with ``apply_augmentation_by_level``;
- ``natix/utils/image_transforms.py``: the four levels, drawn with probability 0.25 each, all
  ending at 224x224 (``TARGET_IMAGE_SIZE``):
    0: centre square crop, resize (PIL bilinear);
    1: rotation uniform in +-20 deg (nearest neighbour, black corners: ``RandomRotationWithParams``
       is built with bilinear interpolation but its ``forward`` calls ``F.rotate(img, angle)``
       without it), random resized crop of scale 0.2-1 and aspect 1 (bilinear, antialiased);
       the horizontal and vertical flips are in the list but never fire
       (their ``params = {}`` set in ``__init__`` sends ``forward`` to the "replay" branch,
       which finds no ``do_flip``), so they are not applied here either;
    2: level 1, then DeeperForensics colour saturation, contrast and JPEG-like down/up-scaling,
       each at a severity drawn from {0, 1} (0 = off);
    3: level 1, then saturation, contrast, JPEG, Gaussian colour noise and Gaussian blur, each
       at a severity drawn from {0, 1, 2};
- ``natix/protocol.py``: the tensor goes back to PIL and is sent as a JPEG at PIL's default
  quality (75);
- ``natix/validator/miner_performance_tracker.py`` and ``reward.py``: predictions are rounded
  with ``np.round`` (0.5 is "no roadwork"), MCC over the last 100 predictions (0 when labels or
  predictions hold one class, clamped at 0), accuracy over the last 10, and each query's reward
  is ``(0.5 * MCC_100 + 0.5 * accuracy_10) ** 3``.

The validator draws from global RNGs; here query ``q`` of a stream seeded ``seed`` draws every
random number (level, angle, crop, severities, noise) from ``default_rng([seed, q])``, so a
query's input is reproducible on its own, in any worker or order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from roadvision.errors import UserError
from roadvision.metrics import mcc

__all__ = ["NATIX_SIZE", "NATIX_LEVELS", "NATIX_LEVEL_PROBS", "NATIX_JPEG_QUALITY",
           "natix_augment", "natix_pipeline", "jpeg_roundtrip", "natix_hook", "natix_level",
           "natix_stream", "natix_round", "natix_rolling", "natix_scores"]

NATIX_SIZE = 224
NATIX_LEVELS = (0, 1, 2, 3)
NATIX_LEVEL_PROBS = (0.25, 0.25, 0.25, 0.25)  # apply_augmentation_by_level's level_probs
NATIX_JPEG_QUALITY = 75  # PIL's default: prepare_image_synapse calls image.save(format="JPEG")
MCC_WINDOW, ACCURACY_WINDOW = 100, 10  # reward.py: get_metrics(uid, window=100 / 10)
REWARD_EXPONENT = 3.0  # validator/config.py REWARD_CURVE_EXPONENT

# DeeperForensics parameters by severity 1..5 (image_transforms.get_distortion_parameter)
_DISTORTION_PARAMS = {
    "CS": [0.4, 0.3, 0.2, 0.1, 0.0],
    "CC": [0.85, 0.725, 0.6, 0.475, 0.35],
    "GNC": [0.001, 0.002, 0.005, 0.01, 0.05],
    "GB": [7, 9, 13, 17, 21],
    "JPEG": [2, 3, 4, 5, 6],
}
# (distortion, highest severity) in the order each level's transform list applies them
_LEVEL_DISTORTIONS = {
    2: (("CS", 1), ("CC", 1), ("JPEG", 1)),
    3: (("CS", 2), ("CC", 2), ("JPEG", 2), ("GNC", 2), ("GB", 2)),
}


# --- the DeeperForensics distortions, as image_transforms.py writes them (BGR uint8 in)
def _bgr2ycbcr(img_bgr: np.ndarray) -> np.ndarray:
    img_ycrcb = cv2.cvtColor(img_bgr.astype(np.float32), cv2.COLOR_BGR2YCR_CB)
    img_ycbcr = img_ycrcb[:, :, (0, 2, 1)].astype(np.float32)
    img_ycbcr[:, :, 0] = (img_ycbcr[:, :, 0] * (235 - 16) + 16) / 255.0
    img_ycbcr[:, :, 1:] = (img_ycbcr[:, :, 1:] * (240 - 16) + 16) / 255.0
    return img_ycbcr


def _ycbcr2bgr(img_ycbcr: np.ndarray) -> np.ndarray:
    img_ycbcr = img_ycbcr.astype(np.float32)
    img_ycbcr[:, :, 0] = (img_ycbcr[:, :, 0] * 255.0 - 16) / (235 - 16)
    img_ycbcr[:, :, 1:] = (img_ycbcr[:, :, 1:] * 255.0 - 16) / (240 - 16)
    img_ycrcb = img_ycbcr[:, :, (0, 2, 1)].astype(np.float32)
    return cv2.cvtColor(img_ycrcb, cv2.COLOR_YCR_CB2BGR)


def _distort(kind: str, img: np.ndarray, param: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "CS":
        ycbcr = _bgr2ycbcr(img)
        ycbcr[:, :, 1] = 0.5 + (ycbcr[:, :, 1] - 0.5) * param
        ycbcr[:, :, 2] = 0.5 + (ycbcr[:, :, 2] - 0.5) * param
        return _ycbcr2bgr(ycbcr).astype(np.uint8)
    if kind == "CC":
        return (img.astype(np.float32) * param).astype(np.uint8)
    if kind == "JPEG":
        h, w, _ = img.shape
        small = cv2.resize(img, (w // int(param), h // int(param)))
        return cv2.resize(small, (w, h))
    if kind == "GNC":
        ycbcr = _bgr2ycbcr(img) / 255
        noisy = (ycbcr + math.sqrt(param) * rng.standard_normal(ycbcr.shape)) * 255
        return np.clip(_ycbcr2bgr(noisy), 0, 255).astype(np.uint8)
    if kind == "GB":
        return cv2.GaussianBlur(img, (int(param), int(param)), param * 1.0 / 6)
    raise ValueError(kind)


def _apply_distortion(tensor: Any, kind: str, severity: int, rng: np.random.Generator) -> Any:
    """``ApplyDeeperForensicsDistortion.__call__`` on a [3, H, W] RGB float tensor in [0, 1]."""
    import torch

    if severity == 0:
        return tensor
    img = tensor[[2, 1, 0], ...].permute(1, 2, 0).cpu().numpy()
    img = (img * 255).astype(np.uint8)  # truncation, as the validator does
    img = _distort(kind, img, _DISTORTION_PARAMS[kind][severity - 1], rng)
    out = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
    return out[[2, 1, 0], ...]


def _random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                             scale: tuple[float, float] = (0.2, 1.0)) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` with ratio (1, 1): (top, left, h, w)."""
    area = height * width
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        side = int(round(math.sqrt(target_area)))
        if 0 < side <= width and 0 < side <= height:
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            return top, left, side, side
    side = min(height, width)  # torchvision's fallback: a centre crop of aspect 1
    return (height - side) // 2, (width - side) // 2, side, side


def _to_tensor(image: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)  # a copy: inputs
    # may be read-only (decoded bytes)


def _to_uint8(tensor: Any) -> np.ndarray:
    # transforms.ToPILImage on a float tensor: mul(255).byte(), i.e. truncation
    return tensor.clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()


def _draw_level(rng: np.random.Generator) -> int:
    # apply_augmentation_by_level: the first level whose cumulative probability >= the draw
    value = rng.random()
    cumulative = np.cumsum(NATIX_LEVEL_PROBS)
    return int(min(np.searchsorted(cumulative, value, side="left"), len(NATIX_LEVELS) - 1))


def natix_augment(image: np.ndarray, level: int, rng: np.random.Generator,
                  size: int = NATIX_SIZE) -> np.ndarray:
    """One validator augmentation at ``level`` of an RGB uint8 image -> ``size`` x ``size``
    uint8 (before the query's JPEG encoding)."""
    from roadvision.torch_compat import ensure_torchvision

    ensure_torchvision()
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    if level not in NATIX_LEVELS:
        raise ValueError(f"NATIX level must be one of {NATIX_LEVELS}, got {level}")
    if level == 0:  # get_base_transforms: centre_crop(), Resize(224), ToTensor()
        pil = Image.fromarray(image)
        side = min(pil.size)
        pil = F.center_crop(pil, [side, side])
        pil = F.resize(pil, [size, size], interpolation=InterpolationMode.BILINEAR)
        return np.asarray(pil.convert("RGB"))
    x = _to_tensor(image)
    angle = float(rng.uniform(-20.0, 20.0))
    x = F.rotate(x, angle)  # the validator's call: torchvision's default, nearest
    top, left, h, w = _random_resized_crop_box(x.shape[1], x.shape[2], rng)
    x = F.resized_crop(x, top, left, h, w, [size, size],
                       interpolation=InterpolationMode.BILINEAR, antialias=True)
    for kind, highest in _LEVEL_DISTORTIONS.get(level, ()):
        x = _apply_distortion(x, kind, int(rng.integers(0, highest + 1)), rng)
    return _to_uint8(x)


def natix_pipeline(level: int, size: int = NATIX_SIZE
                   ) -> Callable[..., dict[str, np.ndarray]]:
    """``f(image=...) -> {"image": ...}``: level ``level`` with a fixed seed (0), for callers
    that want one level's look; queries go through :func:`natix_hook`."""
    if level not in NATIX_LEVELS:
        raise ValueError(f"NATIX level must be one of {NATIX_LEVELS}, got {level}")

    def apply(image: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
        return {"image": natix_augment(image, level, np.random.default_rng(seed), size)}

    return apply


def jpeg_roundtrip(image: np.ndarray, quality: int = NATIX_JPEG_QUALITY) -> np.ndarray:
    """Encode as JPEG and decode again: what the validator's base64 payload holds."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def _query_rng(seed: int, query: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(query)])


def natix_level(index: int, seed: int = 0) -> int:
    """The level query ``index`` of a stream seeded ``seed`` is augmented at (its first draw)."""
    return _draw_level(_query_rng(seed, index))


def natix_hook(seed: int = 0, size: int = NATIX_SIZE) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(image, query) -> 224 px JPEG-decoded image`` for ``ManifestDataset(image_hook=...)``:
    the level, then every other draw, from the query's own generator."""

    def hook(image: np.ndarray, index: int) -> np.ndarray:
        rng = _query_rng(seed, index)
        level = _draw_level(rng)
        return jpeg_roundtrip(natix_augment(image, level, rng, size))

    return hook


def natix_stream(labels: np.ndarray, n_queries: int | None = None, seed: int = 0) -> np.ndarray:
    """Row indices of a validator-like query stream: each query draws its label with
    probability 0.5, then one row of that label uniformly (with replacement), as
    ``determine_challenge_type`` and ``cache.sample(label)`` do. ``n_queries`` defaults to the
    number of rows."""
    y = np.asarray(labels).astype(np.int64)
    by_label = [np.flatnonzero(y == 0), np.flatnonzero(y == 1)]
    if not len(by_label[0]) or not len(by_label[1]):
        raise UserError("the NATIX protocol needs images of both labels (it asks for each with "
                        f"probability 0.5); this split has {len(by_label[0])} without roadwork "
                        f"and {len(by_label[1])} with")
    n = len(y) if n_queries is None else int(n_queries)
    rng = np.random.default_rng([int(seed), 0x5EED])
    query_labels = rng.integers(0, 2, n)
    return np.array([by_label[q][rng.integers(0, len(by_label[q]))] for q in query_labels],
                    dtype=np.int64)


def natix_round(probs: np.ndarray) -> np.ndarray:
    """The validator's decision, ``np.round``: half to even, so 0.5 -> 0 (roadwork iff p > 0.5)."""
    return np.round(np.asarray(probs, dtype=np.float64)).astype(np.int64)


def _window_mcc(labels: np.ndarray, preds: np.ndarray) -> float:
    # get_metrics: 0 unless both labels and predictions hold two classes, then max(0, MCC)
    if len(np.unique(labels)) > 1 and len(np.unique(preds)) > 1:
        return max(0.0, mcc(labels, preds))
    return 0.0


def natix_rolling(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per query of the stream, in order: the validator's MCC over the last 100 predictions,
    accuracy over the last 10 and reward ``(0.5 * mcc + 0.5 * acc) ** 3`` (0 for a probability
    outside [0, 1], ``compute_penalty``)."""
    y = np.asarray(labels).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in shape ({y.shape} vs {p.shape})")
    pred = natix_round(p)
    n = len(y)
    mcc_100, acc_10, reward = np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(n):
        lo100, lo10 = max(0, t + 1 - MCC_WINDOW), max(0, t + 1 - ACCURACY_WINDOW)
        mcc_100[t] = _window_mcc(y[lo100:t + 1], pred[lo100:t + 1])
        acc_10[t] = float(np.mean(y[lo10:t + 1] == pred[lo10:t + 1]))
        valid = 0.0 <= p[t] <= 1.0
        reward[t] = (0.5 * mcc_100[t] + 0.5 * acc_10[t]) ** REWARD_EXPONENT if valid else 0.0
    return {"mcc_100": mcc_100, "accuracy_10": acc_10, "reward": reward}


def natix_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """The validator's figures over a query stream, plus plain MCC at 0.5 with its rounding.

    ``reward``/``mcc_100``/``accuracy_10`` are means over the queries whose 100-query window is
    full (a miner's steady state; every query when the stream is shorter than 100, flagged by
    ``windows_full``); ``*_last`` are the values after the last query.
    """
    y = np.asarray(labels).astype(np.int64)
    rolling = natix_rolling(y, probs)
    n = len(y)
    steady = slice(MCC_WINDOW - 1, n) if n >= MCC_WINDOW else slice(0, n)
    out: dict[str, Any] = {
        "queries": n, "windows_full": n >= MCC_WINDOW,
        "mcc@0.5": mcc(y, natix_round(probs)) if n else 0.0,
    }
    for key, values in rolling.items():
        out[key] = float(values[steady].mean()) if n else 0.0
        out[f"{key}_last"] = float(values[-1]) if n else 0.0
    return out
