"""A seeded, resumable sampler: GPS-weighted draws with replacement, or a plain shuffle.

``torch.utils.data.WeightedRandomSampler`` draws from the global RNG (or a generator whose state
moves as it is consumed), so a resumed run cannot reproduce the draws of the epochs it skipped.
Here the indices of epoch ``e`` are a pure function of ``(seed, e)``: the sampler's state is
two integers, saved in the checkpoint, and a resumed run draws exactly what an uninterrupted
run would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler", "ResumableSampler"]


class EpochSampler(Sampler[int]):
    """``num_samples`` indices per epoch, a pure function of ``(seed, epoch)``: subclasses write
    :meth:`indices`; the state saved in a checkpoint is those two integers."""

    num_samples: int
    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.num_samples

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])


class ResumableSampler(EpochSampler):
    """Yields ``num_samples`` dataset indices per epoch.

    Args:
        weights: one non-negative weight per sample (the manifest's ``weight`` column), or None
            for a uniform shuffle without replacement.
        num_samples: draws per epoch (default: the dataset size).
        seed: run seed; epoch ``e`` uses ``seed * 100003 + e``.
    """

    def __init__(
        self,
        num_items: int,
        weights: Sequence[float] | np.ndarray | None = None,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if num_items <= 0:
            raise ValueError("the sampler needs at least one item")
        self.num_items = num_items
        self.num_samples = int(num_samples or num_items)
        self.seed = int(seed)
        self.epoch = 0
        self.weights: torch.Tensor | None = None
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            if w.numel() != num_items:
                raise ValueError(f"{w.numel()} weights for {num_items} items")
            if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError("weights must be finite, >= 0, and not all 0")
            self.weights = w

    def indices(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        if self.weights is None:
            idx = torch.cat([torch.randperm(self.num_items, generator=gen)
                             for _ in range(-(-self.num_samples // self.num_items))])
            return idx[: self.num_samples].tolist()
        return torch.multinomial(self.weights, self.num_samples, replacement=True,
                                 generator=gen).tolist()
