"""Helpers for the models tests: tiny random batches built through the real preprocessing."""

from __future__ import annotations

import numpy as np
import torch

from roadvision.data.contract import VOCABULARIES


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def roadwork_batch(b: int = 2, v: int = 3, size: int = 32, seed: int = 0,
                   null_metadata: bool = False) -> dict[str, torch.Tensor]:
    """A roadwork batch made directly (no view extraction), metadata all NULL or all set."""
    g = torch.Generator().manual_seed(seed)
    nulls = {f: len(VOCABULARIES[f]) for f in VOCABULARIES}
    batch = {
        "views": torch.randn(b, v, 3, size, size, generator=g),
        "view_mask": torch.ones(b, v, dtype=torch.bool),
        "gps": torch.tensor([[40.44, -79.99]] * b),
        "gps_mask": torch.full((b,), not null_metadata),
        "label": torch.tensor([float(i % 2) for i in range(b)]),
    }
    for f, null in nulls.items():
        batch[f] = torch.full((b,), null) if null_metadata else torch.arange(b) % null
    if null_metadata:
        batch["gps"] = torch.full((b, 2), float("nan"))  # NULL slots may hold garbage
    return batch


def lanes_batch(b: int = 2, size: int = 64, num_classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(b, 3, size, size, generator=g),
            "mask": torch.randint(0, num_classes, (b, size, size), generator=g)}
