"""Mixed-domain batches: a sampler that interleaves scene families (issue 13).

With families of unequal size, a plain shuffle gives batches dominated by the largest one, and
a model can lean on that family's look. Here every epoch is a sequence of rounds; each round
takes one sample from every family in a random order, so any ``batch_size`` consecutive
draws hold each family ``batch_size / k`` times (up to one). Small families are cycled
(reshuffled each pass) rather than dropping rows of the large ones. Like ``ResumableSampler``,
epoch ``e``'s indices are a pure function of ``(seed, e)``, so a resumed run draws the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from roadvision.training.sampler import EpochSampler

__all__ = ["FamilySampler"]


class FamilySampler(EpochSampler):
    """Yields ``num_samples`` dataset indices per epoch, families interleaved round-robin.

    Args:
        groups: each item's family name (or any hashable group key).
        num_samples: draws per epoch (default: the dataset size).
        seed: run seed.
    """

    def __init__(self, groups: Sequence, num_samples: int | None = None, seed: int = 0) -> None:
        if len(groups) == 0:
            raise ValueError("the sampler needs at least one item")
        keys = np.asarray([str(g) for g in groups])
        self.families = sorted(set(keys.tolist()))
        self.members = [np.flatnonzero(keys == f) for f in self.families]
        self.num_items = len(keys)
        self.num_samples = int(num_samples or self.num_items)
        self.seed = int(seed)
        self.epoch = 0

    def indices(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        gen = torch.Generator().manual_seed(self.seed * 100003 + epoch + 7919)
        k = len(self.families)
        rounds = -(-self.num_samples // k)
        streams = []
        for members in self.members:
            passes = -(-rounds // len(members))
            order = torch.cat([torch.randperm(len(members), generator=gen)
                               for _ in range(passes)])[:rounds]
            streams.append(members[order.numpy()])
        out = []
        for r in range(rounds):
            for f in torch.randperm(k, generator=gen).tolist():
                out.append(int(streams[f][r]))
        return out[: self.num_samples]
