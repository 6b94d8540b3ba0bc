"""Data figures: generator throughput and multi-view extraction against a PIL LANCZOS baseline.

    python -m benchmarks.bench_data [--n 50] [--size default] [--repeats 7]

1. ``generate()`` throughput (samples/s, files written included) for each task at one of
   the generator's named image sizes.
2. One 4032x3024 street image (a generated roadwork scene) cut into 12 views of 224 px:
   ``roadvision.data.multiview.extract_views`` against the obvious baseline, PIL's LANCZOS
   resize of each of the same 12 boxes (``view_boxes``). Both run interleaved in one process,
   median of ``--repeats``; the mean absolute pixel difference between the two outputs shows
   that the fast path does not buy its speed with a different picture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from roadvision.data.multiview import extract_views, view_boxes
from roadvision.data.synth import SIZES, generate, render_sample


def _throughput(task: str, n: int, size: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(task, n, seed=0, out=Path(tmp) / "d", size=size)
        seconds = time.perf_counter() - start
    return n / seconds, seconds


def pil_views(image: np.ndarray, view_size: int, num_views: int = 12) -> np.ndarray:
    """The baseline: PIL crop + LANCZOS resize of every box."""
    pil = Image.fromarray(image)
    boxes = view_boxes(image.shape[1], image.shape[0], num_views)
    return np.stack([np.asarray(pil.crop(box).resize((view_size, view_size), Image.LANCZOS))
                     for box in boxes])


def _multiview(repeats: int, view_size: int = 224) -> dict[str, float]:
    image = render_sample("roadwork", 0, 1, 4032, 3024)["image"]
    ours_t, pil_t = [], []
    ours = pil = None
    for _ in range(repeats):  # interleaved: background load hits both alike
        start = time.perf_counter()
        ours = extract_views(image, view_size)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        pil = pil_views(image, view_size)
        pil_t.append(time.perf_counter() - start)
    assert ours is not None and pil is not None and ours.shape == pil.shape
    diff = float(np.abs(ours.astype(np.int16) - pil.astype(np.int16)).mean())
    ours_ms, pil_ms = 1000 * statistics.median(ours_t), 1000 * statistics.median(pil_t)
    return {"views": len(ours), "ours_ms": ours_ms, "pil_ms": pil_ms,
            "speedup": pil_ms / ours_ms, "mean_abs_diff": diff}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="samples per task for throughput")
    parser.add_argument("--size", default="default", choices=list(SIZES),
                        help="the generator's named image size")
    parser.add_argument("--repeats", type=int, default=7, help="multi-view repeats (median)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROADVISION_QUIET", "1")

    print(f"generator throughput, size {args.size}, n={args.n} (files written included)")
    for task in ("lanes", "roadwork"):
        w, h = getattr(SIZES[args.size], task)
        rate, seconds = _throughput(task, args.n, args.size)
        print(f"  {task:9s} {w}x{h}: {rate:7.1f} samples/s ({seconds:.1f} s)")

    r = _multiview(args.repeats)
    print(f"multi-view extraction, one 4032x3024 image -> {r['views']} views of 224 px, "
          f"median of {args.repeats}:")
    print(f"  extract_views (INTER_AREA, shrink once): {r['ours_ms']:8.1f} ms")
    print(f"  PIL crop + LANCZOS per view (baseline):  {r['pil_ms']:8.1f} ms")
    print(f"  speed-up {r['speedup']:.1f}x; mean |difference| {r['mean_abs_diff']:.2f} "
          "grey levels (0-255)")


if __name__ == "__main__":
    main()
