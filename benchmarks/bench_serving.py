"""Serving benchmark: latency (uncached / cached), serving overhead, throughput, TTA cost.

Everything is measured in one run, side by side, against real processes on loopback: a
redis-server and ``python -m roadvision.serving`` (twice: with micro-batching and without).
The model is ``roadwork_student`` (randomly initialised: speed does not depend on the weights);
inputs are distinct 224x224 JPEGs without metadata, as the NATIX validator sends them.

    python -m benchmarks.bench_serving [--requests 120] [--preset roadwork_student] \
        [--forward_workers 1]

Definitions:
- uncached: every request carries a new image (a cache miss, Redis lookup + store included);
- cached: the same image again (a Redis hit);
- bare forward: ``predict(model, [sample])`` in this process on the same input, the sample
  already prepared; "bare pipeline" adds JPEG decoding and ``prepare_sample``;
- overhead = p50 HTTP latency (uncached) / p50 bare forward (and / p50 bare pipeline);
- throughput: requests/s with C concurrent clients, each request a new image.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

#: torch threads in the server and in this process (bare forward): the same for both, and 1
#: because on a shared, oversubscribed CPU more intra-op threads make a forward much slower.
THREADS = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jpeg(seed: int, size: int = 224) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    array[:, ::9] = 255
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _body(image: bytes, tta: str = "none") -> dict:
    return {"instances": [{"image_b64": base64.b64encode(image).decode(), "tta": tta}]}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Proc:
    def __init__(self, args: list[str], port: int, log: Path, wait_url: str | None) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{args[0]} exited: see {log}")
            try:
                if wait_url is None:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return
                if httpx.get(wait_url, timeout=1).status_code == 200:
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{args[0]} did not start; see {log}")

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.log.close()


def start_server(bundle: Path, redis_url: str, batch: int, wait_ms: float, tmp: Path,
                 forward_workers: int = 1) -> tuple:
    port = _free_port()
    proc = Proc([sys.executable, "-m", "roadvision.serving", "--model", f"roadwork={bundle}",
                 "--http_port", str(port), "--redis", redis_url, "--max_batch_size", str(batch),
                 "--max_batch_wait_ms", str(wait_ms), "--enable_latency_logging", "false",
                 "--forward_workers", str(forward_workers)],
                port, tmp / f"server_b{batch}.log",
                f"http://127.0.0.1:{port}/v2/models/roadwork/ready")
    return proc, f"http://127.0.0.1:{port}/v1/models/roadwork:predict"


def server_means(url: str) -> dict[str, float]:
    """Server-side totals from /metrics (seconds, counts) for the served model."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url.split("/v1/")[0] + "/metrics", timeout=10).text
    wanted = {"roadvision_request_latency_seconds_sum", "roadvision_request_latency_seconds_count",
              "request_preprocess_seconds_sum", "request_predict_seconds_sum"}
    out = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                out[sample.name] += sample.value
    return out


def sequential(url: str, images: list[bytes], tta: str = "none") -> list[float]:
    """Latency (s) of each request, one at a time on a keep-alive connection."""
    times = []
    with httpx.Client(timeout=60) as client:
        for image in images:
            body = _body(image, tta)
            start = time.perf_counter()
            r = client.post(url, json=body)
            times.append(time.perf_counter() - start)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text}")
    return times


async def _throughput(url: str, images: list[bytes], concurrency: int) -> float:
    queue = list(images)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker():
            while queue:
                r = await client.post(url, json=_body(queue.pop()))
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(images) / (time.perf_counter() - start)


def bare(bundle: Path, image: bytes, repeats: int) -> tuple[list[float], list[float]]:
    """(forward-only, decode+prepare+forward) latencies in this process (``repeats`` each)."""
    from roadvision.data.images import decode_image
    from roadvision.models import prepare_sample
    from roadvision.runtime.inference import load_for_inference, predict

    # the served model as the server loads it (BatchNorm folded)
    model = _BARE.get(bundle) or _BARE.setdefault(bundle, load_for_inference(bundle))
    sample = prepare_sample(model.cfg, decode_image(image), None)
    forward, pipeline = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, [sample])
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        predict(model, [prepare_sample(model.cfg, decode_image(image), None)])
        pipeline.append(time.perf_counter() - start)
    return forward, pipeline


_BARE: dict = {}


def in_process(bundle: Path, images: list[bytes], forward_workers: int = 1
               ) -> tuple[list[float], list[float]]:
    """(predictor stages, bare forward) latencies alternately in this process: the cost of our
    preprocess/batcher/postprocess without HTTP and without a second process (no cache)."""
    from roadvision.data.images import decode_image
    from roadvision.models import prepare_sample
    from roadvision.runtime.inference import load_for_inference, predict
    from roadvision.serving.config import ServingConfig
    from roadvision.serving.predictor import RoadvisionModel

    model = RoadvisionModel("roadwork", str(bundle),
                            ServingConfig(forward_workers=forward_workers))
    model.load()
    net = load_for_inference(bundle)

    async def run():
        stages, forward = [], []
        for image in images:
            sample = prepare_sample(net.cfg, decode_image(image), None)
            start = time.perf_counter()
            predict(net, [sample])
            forward.append(time.perf_counter() - start)
            start = time.perf_counter()
            job = await model.preprocess(_body(image), {})
            await model.postprocess(await model.predict(job, {}, {}), {}, {})
            stages.append(time.perf_counter() - start)
        return stages, forward

    try:
        return asyncio.run(run())
    finally:
        model.stop()


def interleaved(url: str, bundle: Path, images: list[bytes]) -> tuple[list, list, list]:
    """HTTP (uncached) and bare latencies measured alternately, under the same machine load."""
    http, forward, pipeline = [], [], []
    for image in images:
        f, p = bare(bundle, image, 1)
        forward += f
        pipeline += p
        http += sequential(url, [image])
    return http, forward, pipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=120, help="requests per latency series")
    parser.add_argument("--preset", default="roadwork_student")
    parser.add_argument("--throughput_requests", type=int, default=96)
    parser.add_argument("--forward_workers", type=int, default=1,
                        help="the servers' --forward_workers (0: the forward in a thread)")
    args = parser.parse_args(argv)

    import torch

    from roadvision.models import create_model, list_models, save_bundle

    preset = args.preset if args.preset in list_models() else "roadwork_tiny"
    tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    torch.manual_seed(0)
    bundle = save_bundle(create_model(preset), tmp / "bundle")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"model: {preset} (random init) on {device}; torch threads {THREADS}; "
          f"forward workers {args.forward_workers}; "
          f"{os.cpu_count()} CPUs; input 224x224 JPEG, no metadata")

    redis_port = _free_port()
    redis = Proc([shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                  "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                 redis_port, tmp / "redis.log", None)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    n = args.requests
    seed = iter(range(10_000_000))
    fresh = lambda count: [_jpeg(next(seed)) for _ in range(count)]  # noqa: E731
    rows: list[tuple[str, str]] = []
    try:
        torch.set_num_threads(THREADS)
        bare(bundle, _jpeg(424242), 5)  # warm-up
        workers = args.forward_workers
        stages, stage_fwd = in_process(bundle, fresh(n), workers)
        server, url = start_server(bundle, redis_url, batch=8, wait_ms=2, tmp=tmp,
                                   forward_workers=workers)
        try:
            sequential(url, fresh(10))  # warm up connections, allocator, caches
            before = server_means(url)
            uncached, fwd, pipe = interleaved(url, bundle, fresh(n))
            after = server_means(url)
            stage = {k: after[k] - before[k] for k in after}
            alone = sequential(url, fresh(n))  # the same, without the bare forward in between
            cached_image = _jpeg(424242)
            sequential(url, [cached_image])
            cached = sequential(url, [cached_image] * n)
            tta = {mode: sequential(url, fresh(max(20, n // 3)), mode)
                   for mode in ("none", "flip", "full")}
            tput_batched = {c: asyncio.run(_throughput(url, fresh(args.throughput_requests), c))
                            for c in (1, 4, 16)}
        finally:
            server.stop()
        server, url = start_server(bundle, redis_url, batch=1, wait_ms=0, tmp=tmp,
                                   forward_workers=workers)
        try:
            sequential(url, fresh(10))
            tput_single = {c: asyncio.run(_throughput(url, fresh(args.throughput_requests), c))
                           for c in (1, 4, 16)}
        finally:
            server.stop()
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    ms = lambda values, q: 1000 * _pct(values, q)  # noqa: E731
    p50_unc, p50_hit = ms(uncached, 50), ms(cached, 50)
    rows += [
        ("bare forward p50 / p99", f"{ms(fwd, 50):.2f} / {ms(fwd, 99):.2f} ms"),
        ("bare decode+prepare+forward p50", f"{ms(pipe, 50):.2f} ms"),
        ("HTTP uncached p50 / p99", f"{p50_unc:.2f} / {ms(uncached, 99):.2f} ms"),
        ("HTTP cached p50 / p99", f"{p50_hit:.2f} / {ms(cached, 99):.2f} ms"),
        ("cached speed-up (p50)", f"{p50_unc / p50_hit:.1f}x  (goal >= 20x, cached p50 <= 3 ms)"),
        ("overhead vs bare forward", f"{p50_unc / ms(fwd, 50):.2f}  (goal <= 1.2)"),
        ("overhead vs bare decode+prepare+forward", f"{p50_unc / ms(pipe, 50):.2f}"),
    ]
    rows.append(("HTTP uncached p50, not interleaved",
                 f"{ms(alone, 50):.2f} ms -> overhead {_pct(alone, 50) / _pct(fwd, 50):.2f} "
                 "(the server's weights stay in CPU cache)"))
    rows.append(("in-process predictor stages / bare forward",
                 f"{ms(stages, 50):.2f} / {ms(stage_fwd, 50):.2f} ms = "
                 f"{_pct(stages, 50) / _pct(stage_fwd, 50):.2f} (no HTTP, no second process)"))
    count = stage["roadvision_request_latency_seconds_count"] or 1
    mean = lambda key: 1000 * stage[key] / count  # noqa: E731
    rows.append(("uncached, server-side means",
                 f"total {mean('roadvision_request_latency_seconds_sum'):.2f} ms = preprocess "
                 f"{mean('request_preprocess_seconds_sum'):.2f} + predict "
                 f"{mean('request_predict_seconds_sum'):.2f} ms + rest; client mean "
                 f"{1000 * statistics.mean(uncached):.2f} ms, bare forward mean "
                 f"{1000 * statistics.mean(fwd):.2f} ms"))
    base = statistics.median(tta["none"])
    for mode in ("flip", "full"):
        rows.append((f"TTA {mode} vs none (p50)",
                     f"{1000 * statistics.median(tta[mode]):.1f} ms vs "
                     f"{1000 * base:.1f} ms = {statistics.median(tta[mode]) / base:.2f}x"))
    for c in (1, 4, 16):
        rows.append((f"throughput c={c}: batching on / off",
                     f"{tput_batched[c]:.1f} / {tput_single[c]:.1f} req/s "
                     f"({tput_batched[c] / tput_single[c]:.2f}x)"))
    width = max(len(k) for k, _ in rows)
    print(f"requests per latency series: {n}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
