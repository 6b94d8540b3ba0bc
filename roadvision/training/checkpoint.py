"""Per-epoch training checkpoints: everything needed to continue as if never stopped.

Contents: model, optimiser, scheduler and sampler state, the RNG states (python, numpy, torch),
epoch, best metric, early-stopping counter and history. Written to a temporary folder and
renamed into place, so a run killed while writing keeps the previous complete checkpoint.

Checkpoints are for resuming our own runs: they hold only tensors and plain Python values and
are read back with ``torch.load(weights_only=True)``, so loading one never runs pickled code.
The model that leaves a run is the bundle (``roadvision.models.bundle``), not this file.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_DIR", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

CHECKPOINT_DIR = "checkpoint"
_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch RNG states as plain lists and tensors."""
    py_version, py_state, py_gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically replace ``out_dir/checkpoint`` with ``state``."""
    final = Path(out_dir) / CHECKPOINT_DIR
    tmp = Path(out_dir) / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / _FILE)
    old = Path(out_dir) / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out_dir: str | Path) -> dict[str, Any] | None:
    """The last complete checkpoint under ``out_dir``, or None when there is none."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):  # .old: killed between two renames
        path = Path(out_dir) / name / _FILE
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    return None
