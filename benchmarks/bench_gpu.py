"""The ``full`` training profile on one GPU, both tasks: figures, images/s and GPU utilisation.

Run by ``benchmarks/gpu.sh`` (see there); nothing else depends on it. Generates both data sets
at once (two processes: the generator is CPU-bound), splits them, trains each task with the
``full`` profile (DataLoader workers, pinned memory, prefetching), scores the test split and
samples ``nvidia-smi`` every 0.5 s during each training. ``--device cpu --quick`` checks the
wiring on a machine without a GPU (utilisation then reads n/a).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

# Sized for under 10 minutes on one GPU with 8+ CPU cores (generation is about 3 minutes of it).
SIZES = {"lanes": ("bench", 600), "roadwork": ("bench", 1200)}
QUICK_SIZES = {"lanes": ("tiny", 40), "roadwork": ("tiny", 40)}


def _make(task: str, size: str, n: int, work: str, seed: int) -> str:
    from roadvision.data.split import split_dataset
    from roadvision.data.synth import generate

    raw, split = Path(work) / f"{task}_raw", Path(work) / f"{task}_split"
    if not (split / "manifest.parquet").is_file():
        generate(task, n, seed, raw, size=size, family="all")
        split_dataset(raw, split, seed=seed)
    return str(split)


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``interval`` s, in a background thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(v) for v in out.strip().split(",")[:2])
                self.samples.append((util, mem))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"gpu_util_mean": "n/a", "gpu_util_p90": "n/a", "gpu_mem_max_mib": "n/a"}
        util = sorted(u for u, _ in self.samples)
        return {"gpu_util_mean": round(sum(util) / len(util), 1),
                "gpu_util_p90": util[int(0.9 * (len(util) - 1))],
                "gpu_mem_max_mib": max(m for _, m in self.samples)}


def _train_and_score(task: str, data: str, work: Path, args: argparse.Namespace
                     ) -> dict[str, Any]:
    from roadvision.evaluation import evaluate
    from roadvision.training import TrainConfig, train

    kw: dict[str, Any] = {"device": args.device, "epochs": args.epochs or (1 if args.quick else 12)}
    if args.quick:
        kw.update(preset=f"{task}_tiny", batch_size=8)
    cfg = TrainConfig.for_profile("full", task, **kw)
    t0 = time.perf_counter()
    with GpuSampler() as gpu:
        res = train(data, work / f"run_{task}", cfg)
    wall = time.perf_counter() - t0
    steps = sum(h["train_steps"] for h in res.history)
    train_s = sum(h["train_seconds"] for h in res.history)
    data_s = sum(h["data_seconds"] for h in res.history)
    ev = evaluate(res.bundle_dir, data, split="test", device=args.device)
    m = ev["metrics"]
    figures = ({"miou_no_bg": ev["headline"], **{f"iou_{k}": v for k, v in
                                                  m["per_class_iou"].items()}}
               if task == "lanes" else
               {"mcc@0.5": m["mcc"], "auroc": m["auroc"], "ece": m.get("ece")})
    return {"task": task, "epochs_run": len(res.history), "best_epoch": res.best_epoch,
            "num_workers": cfg.num_workers, "batch_size": cfg.batch_size,
            "train_images_per_s": round(steps * cfg.batch_size / max(train_s, 1e-9), 1),
            "data_wait_share": round(data_s / max(train_s, 1e-9), 3),
            "wall_s": round(wall, 1), **gpu.summary(), **figures}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (wiring check)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per task (default 12, --quick 1: the full profile's 40 do "
                             "not fit 10 minutes)")
    parser.add_argument("--quick", action="store_true", help="tiny data and models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --device cpu --quick to check the wiring")
    sizes = QUICK_SIZES if args.quick else SIZES
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(2) as pool:  # both generators at once
            futures = {t: pool.submit(_make, t, s, n, str(work), args.seed)
                       for t, (s, n) in sizes.items()}
            data = {t: f.result() for t, f in futures.items()}
        print(f"data: {time.perf_counter() - t0:.0f} s", flush=True)
        rows = [_train_and_score(t, data[t], work, args) for t in ("lanes", "roadwork")]
    print("\nfull profile on one GPU (synthetic data, all scene families)")
    for row in rows:
        print(json.dumps(row, default=str))
    print(f"(gpu benchmark took {time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
