"""The ensemble's soft targets, computed once per training image and kept on disk.

On the fly, every epoch runs every teacher on every image; cached, each teacher sees each image
once (un-augmented: the student learns to give the clean image's answer from its augmented
copy, as in Noisy Student, Xie et al. 2020). The file sits next to the run
(``out_dir/teacher_probs.npz``) and is keyed by the teachers' bundle bytes and the row ids, so a
resumed run reuses it and a changed teacher or pool recomputes it. Image-level targets only:
per-pixel lane targets would have to follow each epoch's random crop.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CACHE_FILE", "cache_key", "cached_probabilities"]

CACHE_FILE = "teacher_probs.npz"


def cache_key(teacher_bundles: Sequence[str | Path], ids: Sequence[str]) -> str:
    """sha256 over every teacher bundle file's name and bytes, then the row ids in order."""
    h = hashlib.sha256()
    for bundle in teacher_bundles:
        for path in sorted(p for p in Path(bundle).rglob("*") if p.is_file()):
            h.update(path.name.encode() + b"\0")
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    h.update("\0".join(ids).encode())
    return h.hexdigest()


def cached_probabilities(run_dir: str | Path, key: str, compute: Callable[[], np.ndarray]
                         ) -> tuple[np.ndarray, bool]:
    """``(probabilities, reused)``: the cache under ``run_dir`` when its key matches, else
    ``compute()`` written there (aside, then renamed: a killed run leaves no half file)."""
    path = Path(run_dir) / CACHE_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) == key:
                return f["probs"].astype(np.float32), True
    probs = np.asarray(compute(), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, key=np.array(key), probs=probs)
    os.replace(tmp, path)
    return probs, False
