"""Tiny, fast data sets for the training/evaluation tests (no dependency on the generator).

Roadwork: an orange block on a grey street means "roadwork"; lanes: thin white/yellow lines on
asphalt with their class-id masks. Learnable in a few steps on one CPU core, so tests can check
that training actually learns, and ``noise=True`` makes features that carry no label signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from roadvision.data.contract import DatasetInfo, classes_for, write_dataset

CITIES = ("alpha", "beta", "gamma")
WEATHER = ("clear", "rainy", None)


def _split(i: int, n: int) -> str:
    frac = i / n
    return "train" if frac < 0.6 else ("val" if frac < 0.8 else "test")


def make_roadwork(out: Path, n: int = 32, size: int = 32, seed: int = 0, noise: bool = False,
                  splits=None) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = int(i % 2) if not noise else int(rng.integers(0, 2))
        if noise:
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        else:
            img = np.full((size, size, 3), 110, np.uint8) + rng.integers(0, 20, (size, size, 3),
                                                                         dtype=np.uint8)
            if label:
                y, x = rng.integers(0, size // 2, 2)
                img[y:y + size // 3, x:x + size // 3] = (255, 120, 0)
        name = f"img_{i:03d}.png"
        Image.fromarray(img).save(out / name)
        rows.append({"id": f"r{i}", "image": name, "label": label,
                     "lat": 40.0 + i * 0.01 if i % 3 else None,
                     "lon": -79.0 if i % 3 else None, "city": CITIES[i % 3],
                     "weather": WEATHER[i % 3], "daytime": "day" if i % 2 else None,
                     "scene": "urban", "width": size, "height": size, "sha256": f"{i:064x}",
                     "source": "test",
                     "split": splits[i] if splits else _split(i, n), "weight": 1.0 + (i % 4)})
    write_dataset(out, pd.DataFrame(rows), DatasetInfo(task="roadwork",
                                                      classes=classes_for("roadwork"),
                                                      synthetic=True, source="test"))
    return out


def make_lanes(out: Path, n: int = 16, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    colours = {1: (250, 250, 250), 2: (230, 230, 230), 3: (240, 200, 30)}
    rows = []
    for i in range(n):
        img = np.full((size, size, 3), 70, np.uint8) + rng.integers(0, 15, (size, size, 3),
                                                                    dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        for cls in (1, 2, 3):
            x = int(rng.integers(2, size - 4))
            rows_on = np.arange(size) if cls != 2 else np.flatnonzero((np.arange(size) // 6) % 2)
            img[rows_on, x:x + 2] = colours[cls]
            mask[rows_on, x:x + 2] = cls
        Image.fromarray(img).save(out / f"img_{i:03d}.png")
        Image.fromarray(mask).save(out / f"mask_{i:03d}.png")
        rows.append({"id": f"l{i}", "image": f"img_{i:03d}.png", "mask": f"mask_{i:03d}.png",
                     "city": CITIES[i % 3], "weather": WEATHER[i % 3], "width": size,
                     "height": size, "sha256": f"{i:064x}", "source": "test",
                     "split": _split(i, n)})
    write_dataset(out, pd.DataFrame(rows), DatasetInfo(task="lanes", classes=classes_for("lanes"),
                                                      synthetic=True, source="test"))
    return out
