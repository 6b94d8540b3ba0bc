"""A shared-memory arena for handing sample tensors to a forward worker without pickling them.

The front process owns one arena per worker: an anonymous memory file (``memfd``; a temporary
file where the platform has none) that both processes map. ``pack`` copies a batch's tensors
into it and returns a small layout (key, dtype, shape, offset per tensor) that travels over the
worker's pipe; ``unpack`` turns the layout back into tensors that view the mapping (no copy:
the forward's collate copies them into the batch anyway). One batch is in flight per worker,
so a batch never overwrites one still being read.
"""

from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np
import torch

#: Arena size per worker. Pages are touched only as far as batches reach; a batch that does not
#: fit (a huge lanes image) travels pickled through the pipe instead.
ARENA_BYTES = 64 << 20

_ALIGN = 64

Layout = list[list[tuple[str, str, tuple[int, ...], int]]]


def create_arena_file(size: int = ARENA_BYTES) -> int:
    """A file descriptor of ``size`` bytes of shareable memory (inheritable by a child)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("roadvision-forward-arena", 0)
    else:  # macOS: an unlinked temporary file (sparse, so untouched pages cost nothing)
        handle = tempfile.TemporaryFile()  # noqa: SIM115 - the fd outlives the object
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, size)
    os.set_inheritable(fd, True)
    return fd


def map_arena(fd: int, size: int = ARENA_BYTES) -> mmap.mmap:
    return mmap.mmap(fd, size)


def pack(arena: mmap.mmap, samples: list[dict[str, torch.Tensor]]) -> Layout | None:
    """Copy ``samples`` into ``arena``; their layout, or None when they do not fit."""
    # np.require, not np.ascontiguousarray: that one turns 0-d scalars into 1-d arrays.
    arrays = [{key: np.require(value.numpy(), requirements="C") for key, value in sample.items()}
              for sample in samples]
    total = sum(-(-a.nbytes // _ALIGN) * _ALIGN for s in arrays for a in s.values())
    if total > len(arena):
        return None
    layout: Layout = []
    offset = 0
    for sample in arrays:
        entries = []
        for key, array in sample.items():
            view = np.ndarray(array.shape, array.dtype, buffer=arena, offset=offset)
            view[...] = array
            entries.append((key, array.dtype.str, array.shape, offset))
            offset += -(-array.nbytes // _ALIGN) * _ALIGN
        layout.append(entries)
    return layout


def unpack(arena: mmap.mmap, layout: Layout) -> list[dict[str, torch.Tensor]]:
    """The samples that ``pack`` wrote, as tensors viewing ``arena``."""
    return [{key: torch.from_numpy(np.ndarray(shape, np.dtype(dtype), buffer=arena,
                                              offset=offset))
             for key, dtype, shape, offset in entries}
            for entries in layout]
