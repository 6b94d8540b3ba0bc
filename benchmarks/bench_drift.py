"""Drift benchmark: detection power and false alarms, and what payload logging costs.

Two parts, both on synthetic roadwork scenes (scores labelled synthetic):

1. **Detection power / false-alarm rate** of the input-drift test (embedding MMD, permutation
   p-value, alpha 0.05) at a fixed sample size: pools of in-distribution images (the
   generator's own weather and time-of-day mix) and shifted images (the generator's own fog
   and/or night, ``roadvision.monitoring.shifted``) are embedded once by the model's encoder;
   each trial draws ``n`` reference and ``n`` current rows from them (trials share pool rows,
   so they are not fully independent: the pools are 2-4 times ``n``). False alarm: both sides
   from the in-distribution pool, a fresh random split each trial; power: the current side
   from the shifted pool.
   Goal: power >= 0.9 at false alarms <= 0.05 for the fog/night shift.
2. **Payload-logging cost**: two real ``python -m roadvision.serving`` processes side by side,
   logging off and logging on (every request, images included: the dearest setting), no cache
   (every request a forward), the same fresh 224x224 JPEGs sent alternately to both; p50 of
   each and their ratio. Goal: <= 3 % on the uncached p50.

    python -m benchmarks.bench_drift            # roadwork_student (pretrained encoder), full
    python -m benchmarks.bench_drift --quick    # roadwork_tiny, small pools (~1 CPU-minute)
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _pools(model, shifts: list[str], pool: int, shifted_pool: int, size: tuple[int, int]
           ) -> dict[str, np.ndarray]:
    from roadvision.monitoring.features import embed_and_predict
    from roadvision.monitoring.shifted import shifted_roadwork

    def embed(shift: str, n: int, seed: int) -> np.ndarray:
        images = [image for image, _ in shifted_roadwork(shift, n, seed, *size)]
        return embed_and_predict(model, images, with_predictions=False)[0]

    pools = {"none": embed("none", pool, 1)}
    for shift in shifts:
        pools[shift] = embed(shift, shifted_pool, 3)
    return pools


def detection(pools: dict[str, np.ndarray], shifts: list[str], n: int, trials: int,
              permutations: int, alpha: float) -> list[tuple[str, str]]:
    from roadvision.monitoring.drift import mmd_test

    rng = np.random.default_rng(0)

    def sides(name: str) -> tuple[np.ndarray, np.ndarray]:
        """n reference rows, and n current rows: for the null, other rows of the same pool
        (a fresh random split each trial); for a shift, rows of the shifted pool."""
        order = rng.permutation(len(pools["none"]))
        reference = pools["none"][order[:n]]
        if name == "none":
            return reference, pools["none"][order[n:2 * n]]
        return reference, pools[name][rng.choice(len(pools[name]), size=n, replace=False)]

    def rate(name: str) -> float:
        hits = sum(mmd_test(*sides(name), permutations=permutations, alpha=alpha,
                            seed=k).drifted for k in range(trials))
        return hits / trials

    rows = [("false-alarm rate (in-distribution vs reference)",
             f"{rate('none'):.3f}  (goal <= 0.05)")]
    rows += [(f"power, shift {shift}", f"{rate(shift):.3f}  (goal >= 0.9)") for shift in shifts]
    return rows


def logging_cost(bundle: Path, requests: int, tmp: Path) -> list[tuple[str, str]]:
    from benchmarks.bench_serving import Proc, _free_port, _jpeg, _pct

    def start(extra: list[str], name: str) -> tuple[Proc, str]:
        port = _free_port()
        proc = Proc([sys.executable, "-m", "roadvision.serving", "--model", f"roadwork={bundle}",
                     "--http_port", str(port), "--redis", "none", "--enable_latency_logging",
                     "false", "--forward_workers", "1", *extra], port, tmp / f"{name}.log",
                    f"http://127.0.0.1:{port}/v2/models/roadwork/ready")
        return proc, f"http://127.0.0.1:{port}/v1/models/roadwork:predict"

    log_dir = tmp / "payloads"
    plain, plain_url = start([], "plain")
    logged, logged_url = start(["--payload_log_uri", str(log_dir), "--payload_log_sample_rate",
                                "1", "--payload_log_flush_s", "5"], "logged")
    times: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(requests + 10):
                body = {"instances": [{"image_b64": base64.b64encode(_jpeg(10_000 + i)).decode()}]}
                # Alternate which server goes first, so neither always runs right after the other.
                order = [("off", plain_url), ("on", logged_url)]
                for name, url in order if i % 2 else order[::-1]:
                    start_t = time.perf_counter()
                    response = client.post(url, json=body)
                    elapsed = time.perf_counter() - start_t
                    if response.status_code != 200:
                        raise RuntimeError(f"{response.status_code}: {response.text}")
                    if i >= 10:  # the first 10 warm up connections and allocators
                        times[name].append(elapsed)
    finally:
        plain.stop()
        logged.stop()  # flushes the last batch
    from roadvision.monitoring.records import read_logged

    rows_logged = len(read_logged(log_dir))
    p50 = {k: 1000 * _pct(v, 50) for k, v in times.items()}
    return [("uncached p50, payload log off / on",
             f"{p50['off']:.2f} / {p50['on']:.2f} ms ({requests} requests each, interleaved)"),
            ("payload-logging cost on uncached p50",
             f"{100 * (p50['on'] / p50['off'] - 1):+.1f} %  (goal <= 3 %)"),
            ("mean, payload log off / on", f"{1000 * statistics.mean(times['off']):.2f} / "
                                           f"{1000 * statistics.mean(times['on']):.2f} ms"),
            ("rows in the payload log", f"{rows_logged} (every request sampled, images kept)")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, small pools")
    parser.add_argument("--preset", default=None, help="default roadwork_student (quick: tiny)")
    parser.add_argument("--n", type=int, default=None, help="rows per side of one test")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--shifts", default=None, help="comma-separated: fog, night, fog_night")
    parser.add_argument("--requests", type=int, default=None, help="logging-cost requests")
    parser.add_argument("--skip", choices=("detection", "cost"), default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    preset = args.preset or ("roadwork_tiny" if quick else "roadwork_student")
    n = args.n or (20 if quick else 50)
    trials = args.trials or (30 if quick else 200)
    shifts = (args.shifts or ("fog_night" if quick else "fog,night,fog_night")).split(",")
    requests = args.requests or (40 if quick else 300)
    size = (96, 64) if quick else (224, 168)

    import torch

    from roadvision.models import create_model, load_bundle, save_bundle

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_drift_"))
    torch.manual_seed(0)
    bundle = Path(save_bundle(create_model(preset), tmp / "bundle"))
    print(f"model: {preset} (encoder {load_bundle(bundle).cfg.encoder}; head random, the "
          f"encoder as the preset builds it); synthetic roadwork {size[0]}x{size[1]}; "
          f"n = {n} per side, {trials} trials, alpha 0.05")
    rows: list[tuple[str, str]] = []
    try:
        if args.skip != "detection":
            start = time.perf_counter()
            pools = _pools(load_bundle(bundle), shifts, pool=4 * n, shifted_pool=2 * n,
                           size=size)
            rows += detection(pools, shifts, n, trials, permutations=199, alpha=0.05)
            rows.append(("detection part took", f"{time.perf_counter() - start:.0f} s"))
            print(*rows[-1], flush=True)
        if args.skip != "cost":
            start = time.perf_counter()
            rows += logging_cost(bundle, requests, tmp)
            rows.append(("logging-cost part took", f"{time.perf_counter() - start:.0f} s"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
