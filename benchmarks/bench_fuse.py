"""BatchNorm folding (``roadvision.runtime.fuse``): bare forward latency, folded vs unfolded.

    python -m benchmarks.bench_fuse [--repeats 40] [--batch 1] [--size 224] [--threads 1]

Each preset is saved as a bundle and loaded twice, with ``load_bundle`` (unfolded) and with
``load_for_inference`` (folded), as evaluation and serving load it. The bare forward
(``model(batch)`` under ``torch.inference_mode``, no TTA) is timed on one ``--size`` px image,
prepared by ``prepare_sample`` as serving prepares it (roadwork_student: one global view of its
160 px; lanes_small: the tile itself). The two variants alternate call by call, so load from
other processes hits both alike; medians (p50) and the p50 ratio are printed, with the largest
output difference between the two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roadvision.models import collate, create_model, load_bundle, prepare_sample, save_bundle
from roadvision.runtime.fuse import FOLDED_ATTR
from roadvision.runtime.inference import load_for_inference

PRESETS = ("roadwork_student", "lanes_small")


def _batch(model: torch.nn.Module, size: int, batch: int) -> dict:
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return collate([prepare_sample(model.cfg, image, None)] * batch)


def _time(model: torch.nn.Module, batch: dict) -> float:
    start = time.perf_counter()
    model(batch)
    return time.perf_counter() - start


def _bench(name: str, args: argparse.Namespace, work: Path) -> None:
    # a roadwork bundle as training writes it: its view cut pinned (no unpinned-view warning)
    extra = {"view_mode": "multi"} if name.startswith("roadwork") else {}
    bundle = save_bundle(create_model(name, **extra).eval(), work / name)
    start = time.perf_counter()
    plain = load_bundle(bundle)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    folded = load_for_inference(bundle)
    fold_load_s = time.perf_counter() - start
    batch = _batch(plain, args.size, args.batch)
    key = "views" if "views" in batch else "image"
    times: dict[str, list[float]] = {"unfolded": [], "folded": []}
    with torch.inference_mode():
        diff = float((plain(batch)["logits"] - folded(batch)["logits"]).abs().max())
        for _ in range(3):  # warm-up
            plain(batch), folded(batch)
        for _ in range(args.repeats):
            times["unfolded"].append(_time(plain, batch))
            times["folded"].append(_time(folded, batch))
    p50 = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}: input {key} {tuple(batch[key].shape)}, "
          f"{getattr(folded, FOLDED_ATTR)} BatchNorms folded; "
          f"load {1000 * load_s:.0f} ms, load + fold {1000 * fold_load_s:.0f} ms")
    for k, v in times.items():
        print(f"  {k:9s} p50 {1000 * p50[k]:7.2f} ms  "
              f"p90 {1000 * float(np.percentile(v, 90)):7.2f} ms  (n={len(v)})")
    print(f"  folded/unfolded p50 ratio {p50['folded'] / p50['unfolded']:.3f} "
          f"({p50['unfolded'] / p50['folded']:.2f}x); max |logit difference| {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40, help="timed calls per variant")
    parser.add_argument("--batch", type=int, default=1, help="images per forward")
    parser.add_argument("--size", type=int, default=224, help="side of the square image, px")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 = least disturbed by a shared machine)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), metavar="PRESET")
    args = parser.parse_args()
    if args.repeats < 1 or args.batch < 1 or args.size < 32 or args.threads < 1:
        parser.error("--repeats, --batch and --threads must be >= 1 and --size >= 32")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, "
          f"batch {args.batch}, {args.size} px image, bare forward (no TTA)")
    with tempfile.TemporaryDirectory() as work:
        for name in args.presets:
            _bench(name, args, Path(work))


if __name__ == "__main__":
    main()
