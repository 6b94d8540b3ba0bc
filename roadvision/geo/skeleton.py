"""A binary mask -> its one-pixel skeleton -> pixel paths between nodes (graph tracing).

``skimage.morphology.skeletonize`` thins each painted stroke to its centre line. The skeleton
is a graph whose nodes are end points (one neighbour) and junctions (three or more); tracing
walks every edge once, from node to node, and finally the closed loops that have no node.
Lane pixels are a fraction of a percent of a tile, so a Python walk over skeleton pixels is
cheap; ``skan`` does the same with numba, at a first-call JIT cost a batch CLI does not want.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

__all__ = ["skeleton_paths"]

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def skeleton_paths(mask: np.ndarray, min_pixels: int = 2) -> list[np.ndarray]:
    """Paths of ``mask``'s skeleton as (N, 2) float arrays of (row, col) pixel indices."""
    skel = skeletonize(mask.astype(bool))
    if not skel.any():
        return []
    rows, cols = np.nonzero(skel)
    # Pixels become integers 0..n-1; each one's 8-neighbours are looked up once, vectorised,
    # so the walk below touches only Python ints (a noisy mask has 10^5 skeleton pixels).
    index = np.full((skel.shape[0] + 2, skel.shape[1] + 2), -1, np.int64)
    index[rows + 1, cols + 1] = np.arange(len(rows))
    around = np.stack([index[rows + 1 + dr, cols + 1 + dc] for dr, dc in _OFFSETS], axis=1)
    adjacent = [[j for j in row if j >= 0] for row in around.tolist()]
    is_node = [len(a) != 2 for a in adjacent]
    seen: set[tuple[int, int]] = set()  # edges walked, as (low, high) pixel pairs
    paths: list[list[int]] = []

    def edge(a: int, b: int) -> tuple[int, int]:
        return (a, b) if a < b else (b, a)

    def walk(start: int, nxt: int) -> list[int]:
        path, prev, cur = [start], start, nxt
        seen.add(edge(start, nxt))
        while True:
            path.append(cur)
            if is_node[cur] or cur == start:
                return path
            step = [n for n in adjacent[cur] if n != prev and edge(cur, n) not in seen]
            if not step:
                return path
            prev, cur = cur, step[0]
            seen.add(edge(prev, cur))

    for node in (i for i in range(len(rows)) if is_node[i]):
        for n in adjacent[node]:
            if edge(node, n) not in seen:
                paths.append(walk(node, n))
        if not adjacent[node]:  # an isolated pixel
            paths.append([node])
    for p in range(len(rows)):  # loops without any node (a ring of degree-2 pixels)
        for n in adjacent[p]:
            if edge(p, n) not in seen:
                paths.append(walk(p, n))
    return [np.stack([rows[p], cols[p]], axis=1).astype(float) for p in paths
            if len(p) >= min_pixels]
