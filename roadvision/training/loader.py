"""The training DataLoader: in-process on CPU tests, fed by persistent workers on a GPU node.

With ``num_workers == 0`` the loader is rebuilt each epoch exactly as before (bit-identical
resumed runs on CPU). With workers, one loader lives for the whole run: its worker processes
decode and augment ahead of the GPU (``prefetch_factor`` batches each), batches land in pinned
memory on CUDA so the copy to the device overlaps compute, and the workers persist across
epochs instead of being started again. A persistent worker keeps its own copy of the dataset,
so the sampler tags each index with its epoch (``EpochTagged``) and the dataset reads the
epoch from it: augmentation stays a pure function of (seed, epoch, index) either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["EpochTagged", "train_loader"]


class EpochTagged(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for every index of ``sampler`` (which has ``.epoch``)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = int(self.sampler.epoch)
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def train_loader(dataset: Any, sampler: Any, cfg: Any, device: torch.device, epoch: int,
                 collate_fn: Callable) -> DataLoader:
    """The loader for ``epoch`` (with workers: one for all epochs; build it once)."""
    if cfg.num_workers == 0:
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                          collate_fn=collate_fn, num_workers=0,
                          generator=torch.Generator().manual_seed(cfg.seed + epoch),
                          persistent_workers=False)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=EpochTagged(sampler),
                      collate_fn=collate_fn, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", prefetch_factor=cfg.prefetch_factor,
                      persistent_workers=True,
                      generator=torch.Generator().manual_seed(cfg.seed))
