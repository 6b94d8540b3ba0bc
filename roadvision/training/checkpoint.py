"""Per-epoch training checkpoints: everything needed to continue as if never stopped.

Contents: model, optimiser, scheduler and sampler state, the RNG states (python, numpy, torch),
epoch, best metric, early-stopping counter and history. Written to a temporary folder and
renamed into place, so a run killed while writing keeps the previous complete checkpoint.

Checkpoints are for resuming our own runs: they hold only tensors and plain Python values and
are read back with ``torch.load(weights_only=True)``, so loading one never runs pickled code.
The model that leaves a run is the bundle (``roadvision.models.bundle``), not this file.
"""

from __future__ import annotations

import pickle
import random
import shutil
import sys
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
    """The last complete checkpoint under ``out_dir``, or None when there is none.

    A checkpoint that cannot be read (truncated by a full disk, corrupted, not ours) is moved
    aside to ``checkpoint.corrupt-N`` with a one-line warning on stderr, and the previous one
    (``checkpoint.old``) or a fresh start is used instead: a damaged file costs epochs, never
    the run, and is kept for a person to look at.
    """
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):  # .old: killed between two renames
        folder = Path(out_dir) / name
        path = folder / _FILE
        if path.is_symlink() or folder.is_symlink():
            _set_aside(folder, "is a symbolic link; checkpoints are never read through links")
            continue
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            _set_aside(folder, f"cannot be read ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})")
            continue
        missing = [k for k in _REQUIRED if not isinstance(state, dict) or k not in state]
        if missing:
            _set_aside(folder, f"is not a roadvision checkpoint (missing {missing[:4]})")
            continue
        return state
    return None


_REQUIRED = ("model", "optimizer", "scheduler", "sampler", "rng", "epoch", "best_metric",
             "best_epoch", "bad_epochs", "stopped", "history")


def _set_aside(folder: Path, why: str) -> Path:
    """Rename a bad checkpoint folder to ``checkpoint.corrupt-N`` and say so on stderr."""
    n = 1
    while (target := folder.with_name(f"{CHECKPOINT_DIR}.corrupt-{n}")).exists():
        n += 1
    folder.rename(target)
    print(f"warning: {folder / _FILE} {why}; moved to {target.name}, training continues from "
          "the previous checkpoint or from the start", file=sys.stderr)
    return target
