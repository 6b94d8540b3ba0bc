"""Reliability benchmark: rate limits under bursts, health beside hostile requests, and load with
faults (Redis killed and restarted, the server restarted mid-load).

Real processes on loopback: a redis-server and ``python -m roadvision.serving`` serving tiny
roadwork and lanes bundles (randomly initialised: the figures are about the server, not the
model). Bounded: about three minutes on two shared CPU cores.

    python -m benchmarks.bench_reliability [--requests 600] [--concurrency 16]

Phases, all against one server (restarted once, in phase 3):
1. rate limit: keys limited to 10/min; 50 concurrent requests on the fresh server (the first
   traffic it sees), then 120 concurrent on the warm server with another key. Goal: exactly 10
   answered each time, the rest 429, ``roadvision_ratelimit_errors_total`` 0.
2. health: ``/v2/health/live`` probed every 10 ms, idle and then while one hostile request is
   in flight (repeated back to back): the costliest lanes request the budget allows, a 9 MB v2
   JSON of 3 million empty lists, and a 3 KB PNG announcing 4900x4900 pixels. p50/p99/max of
   the probes, side by side; goal p99 under 100 ms.
3. load with faults: REQUESTS requests at CONCURRENCY over 50 distinct images (so the cache
   hits), with Redis killed at 1/4, restarted at 1/2, and the server restarted at 3/4. Clients
   retry refused connections and 503s (as a load balancer would). Counts: failed (no answer
   after the retries), wrong (an answer that differs from that image's reference answer, taken
   before the faults), rate-limited (429; the load key's limit is far above the load).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

KEYS = {"fresh": ("fresh-secret-0123456789abcdef", 10),
        "warm": ("warm-secret-0123456789abcdef", 10),
        "load": ("load-secret-0123456789abcdef", 1_000_000)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png(seed: int, width: int, height: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(seed: int, size: int = 224) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _body(image: bytes) -> dict:
    return {"instances": [{"image_b64": base64.b64encode(image).decode()}]}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir, self.process = _free_port(), workdir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


class Server:
    def __init__(self, args: list[str], log: Path) -> None:
        self.port, self.args, self.log_path, self.process = _free_port(), args, log, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        started = time.perf_counter()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roadvision.serving", "--http_port", str(self.port),
             *self.args], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log_path}")
            try:
                if all(httpx.get(f"{self.url}/v2/models/{m}/ready", timeout=1).status_code == 200
                       for m in ("roadwork", "lanes")):
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self._log.close()

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name)


# --- 1. rate limit ----------------------------------------------------------------------------

async def _burst(url: str, key: str, count: int) -> Counter:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(*[
            client.post("/v1/models/roadwork:predict", json=_body(_jpeg(1)),
                        headers={"X-API-Key": key}) for _ in range(count)])
    return Counter(r.status_code for r in responses)


def rate_limit_phase(server: Server) -> None:
    print("rate limit (10/min per key)")
    for label, key, count in (("fresh server", "fresh", 50), ("warm server", "warm", 120)):
        statuses = asyncio.run(_burst(server.url, KEYS[key][0], count))
        others = sum(v for k, v in statuses.items() if k not in (200, 429))
        print(f"  {label}: {count} concurrent -> answered {statuses[200]}, "
              f"429 {statuses[429]}, other {others}")
    print(f"  roadvision_ratelimit_errors_total: "
          f"{server.metric('roadvision_ratelimit_errors_total'):g}")


# --- 2. health beside hostile requests ----------------------------------------------------------

async def _probe_while(url: str, hostile, seconds: float) -> tuple[list[float], Counter]:
    """Health latencies (ms) while ``hostile`` requests run back to back for ``seconds``."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds
    inflight = asyncio.Event()

    async def attack(client):
        while time.monotonic() < stop:
            inflight.set()
            r = await hostile(client)
            statuses[r.status_code] += 1

    async with httpx.AsyncClient(base_url=url, timeout=120) as client, \
            httpx.AsyncClient(base_url=url, timeout=10) as probe:
        task = asyncio.create_task(attack(client)) if hostile else None
        if task:
            await inflight.wait()
        while time.monotonic() < stop:
            started = time.perf_counter()
            r = await probe.get("/v2/health/live")
            assert r.status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)
        if task:
            await task
    return latencies, statuses


def health_phase(server: Server, seconds: float) -> None:
    key = {"X-API-Key": KEYS["load"][0]}
    costly = _body(_png(5, 600, 600))  # lanes_tiny: 14 x 14 = 196 windows, under the 256 budget
    bomb = (b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":['
            + b",".join([b"[]"] * 3_000_000) + b"]}]}")
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (4900, 4900), 0).save(buffer, "PNG", optimize=True)
    tiny_huge = _body(buffer.getvalue())
    cases = {
        "idle": None,
        "costliest allowed lanes request (196 windows)": lambda c: c.post(
            "/v1/models/lanes:predict", json=costly, headers=key),
        "9 MB JSON of 3M empty lists": lambda c: c.post(
            "/v2/models/lanes/infer", content=bomb,
            headers={**key, "Content-Type": "application/json"}),
        f"{len(buffer.getvalue()) // 1024} KB PNG announcing 4900x4900": lambda c: c.post(
            "/v1/models/lanes:predict", json=tiny_huge, headers=key),
    }
    print(f"health /v2/health/live, probed every 10 ms for {seconds:g} s per case")
    for label, hostile in cases.items():
        started = time.perf_counter()
        latencies, statuses = asyncio.run(_probe_while(server.url, hostile, seconds))
        answered = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        print(f"  {label}: probes {len(latencies)}, p50 "
              f"{statistics.median(latencies):.1f} ms, p99 {_pct(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms"
              + (f"; hostile answers {answered}" if hostile else "")
              + f" ({time.perf_counter() - started:.0f} s)")


# --- 3. load with faults --------------------------------------------------------------------------

async def _load(server: Server, redis: Redis, requests: int, concurrency: int,
                images: list[bytes], reference: dict[int, tuple[float, int]]) -> dict:
    key = {"X-API-Key": KEYS["load"][0]}
    counts: Counter = Counter()
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    done = 0
    faults_at = {requests // 4: "kill redis", requests // 2: "restart redis",
                 3 * requests // 4: "restart server"}
    fault_log = []

    async def fault(name: str) -> None:
        started = time.perf_counter()
        if name == "kill redis":
            redis.kill()
        elif name == "restart redis":
            await asyncio.to_thread(redis.start)
        else:
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)  # same port: clients retry meanwhile
        fault_log.append(f"{name} after {done} answers ({time.perf_counter() - started:.1f} s)")

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty():
            i = queue.get_nowait()
            image = i % len(images)
            for _attempt in range(600):
                try:
                    r = await client.post("/v1/models/roadwork:predict",
                                          json=_body(images[image]), headers=key)
                except httpx.TransportError:
                    counts["retried (connection)"] += 1
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code == 503:
                    counts["retried (503)"] += 1
                    await asyncio.sleep(0.1)
                    continue
                break
            else:
                counts["failed"] += 1
                continue
            if r.status_code == 429:
                counts["rate-limited"] += 1
            elif r.status_code != 200:
                counts["failed"] += 1
            else:
                pred = r.json()["predictions"][0]
                want = reference[image]
                ok = abs(pred["probability"] - want[0]) <= 1e-5 and pred["label"] == want[1]
                counts["ok" if ok else "wrong"] += 1
                counts["cached" if pred["cached"] else "uncached"] += 1
            done += 1
            if done in faults_at:
                await fault(faults_at.pop(done))

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
    return {"counts": counts, "faults": fault_log, "seconds": time.perf_counter() - started}


def load_phase(server: Server, redis: Redis, requests: int, concurrency: int) -> None:
    images = [_jpeg(100 + i) for i in range(50)]
    key = {"X-API-Key": KEYS["load"][0]}
    reference = {}
    for i, image in enumerate(images):
        pred = httpx.post(f"{server.url}/v1/models/roadwork:predict", json=_body(image),
                          headers=key, timeout=60).json()["predictions"][0]
        reference[i] = (pred["probability"], pred["label"])
    result = asyncio.run(_load(server, redis, requests, concurrency, images, reference))
    counts = result["counts"]
    print(f"load with faults: {requests} requests at concurrency {concurrency} over "
          f"{len(images)} images, {result['seconds']:.0f} s")
    for line in result["faults"]:
        print(f"  fault: {line}")
    print(f"  failed {counts['failed']}, wrong {counts['wrong']}, rate-limited "
          f"{counts['rate-limited']}, ok {counts['ok']} (cached {counts['cached']}, uncached "
          f"{counts['uncached']}); retries: connection {counts['retried (connection)']}, "
          f"503 {counts['retried (503)']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--health-seconds", type=float, default=8.0)
    parser.add_argument("--phases", default="ratelimit,health,load",
                        help="comma-separated subset of ratelimit, health, load")
    args = parser.parse_args(argv)

    import torch

    from roadvision.models import create_model, save_bundle

    with tempfile.TemporaryDirectory(prefix="bench_reliability_") as tmp:
        root = Path(tmp)
        bundles = {}
        for name in ("roadwork", "lanes"):
            torch.manual_seed(0)
            bundles[name] = save_bundle(create_model(f"{name}_tiny"), root / name)
        keys = root / "keys.txt"
        keys.write_text("".join(f"{n}:{k}:{limit}\n" for n, (k, limit) in KEYS.items()))
        redis = Redis(root)
        redis.start()
        server = Server(["--model", f"roadwork={bundles['roadwork']}",
                         "--model", f"lanes={bundles['lanes']}", "--redis", redis.url,
                         "--api_keys_file", str(keys), "--rate_limit_per_min", "10"],
                        root / "server.log")
        try:
            print(f"server ready in {server.start():.1f} s")
            phases = set(args.phases.split(","))
            if "ratelimit" in phases:
                rate_limit_phase(server)
            if "health" in phases:
                health_phase(server, args.health_seconds)
            if "load" in phases:
                load_phase(server, redis, args.requests, args.concurrency)
        finally:
            server.stop()
            if redis.process is not None and redis.process.poll() is None:
                redis.kill()


if __name__ == "__main__":
    main()
