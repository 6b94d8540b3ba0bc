"""Serving peers: roadvision against FastAPI+uvicorn, Ray Serve, LitServe, BentoML and PyTriton.

Every server serves the same bundle (``roadwork_student``, randomly initialised) with the same
decode, preprocess and forward (``benchmarks/peers/_common.py``, roadvision's own functions),
one worker and one torch thread each; each peer runs in its own side environment
(``benchmarks/peers/envs.py``, created on first use, never in the project's venv). roadvision
runs as ``python -m roadvision.serving`` from this venv with a Redis cache, as in
bench_serving.py. The reference is the bare forward (``predict(model, [sample])`` on an already
prepared sample) in this process.

    python -m benchmarks.bench_peers [--rounds 3] [--requests 100] [--throughput_requests 200]
        [--conditions quiet,loaded] [--servers roadvision,fastapi,ray,litserve,bentoml,pytriton]
        [--roadvision_args "--forward_workers 1"] [--load_duty 0.5]

How it measures:
- all servers start once; while one is measured the others are frozen (SIGSTOP on their whole
  process tree) so idle peers take no CPU; it is resumed and warmed up before its turn;
- rounds interleave the servers (A, B, C, ... then again, each round starting one server
  later), so drift in the machine affects all alike; figures are medians over rounds;
- in each server's turn: a warm-up, a correctness check (8 images sent at once, each answer
  must equal the bare forward's probability within 1e-4, or the run fails), ``--requests``
  bare forwards, ``--requests`` sequential requests (c=1), ``--throughput_requests`` at
  ``--concurrency`` clients (c=16), then, for roadvision, one image again and again (Redis
  hit); the "x bare forward" figure divides c=1 p50 by the bare p50 of the same turn;
- c=1 and cached requests go through ``http.client`` on one keep-alive connection (see
  ``sequential``), c=16 through httpx's async client;
- every request carries a new 224x224 JPEG (no metadata); request bodies are built before the
  clock starts;
- CPU per request: user+system time of the server's process tree (read from /proc, reaped
  children included; Redis counted with roadvision) over a phase, divided by its requests;
- condition "loaded": ``os.cpu_count()`` processes of ``benchmarks/peers/cpu_load.py``, each
  using at most ``--load_duty`` of a core (CPU-time burn per 10 ms period), started by this
  benchmark and stopped at the end of the condition;
- every server and every load process runs in a session of its own (see OWN_SESSION).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.bench_serving import THREADS, Proc, _free_port, _jpeg, _pct
from benchmarks.peers import envs
from benchmarks.peers.cpu_load import Load
from benchmarks.peers.proctree import proc_stats, signal_tree, tree, tree_cpu
from benchmarks.peers.protocols import (
    list_probability,
    roadvision_v2_request,
    triton_probability,
    triton_request,
    v1_probability,
    v1_request,
)

#: the tolerance on a served probability against the bare forward's.
TOLERANCE = 1e-4
#: roadvision's micro-batching here: the same cap and wait as the peers get (peers/_common.py).
ROADVISION_BATCH = ["--max_batch_size", "8", "--max_batch_wait_ms", "2"]
#: every server starts in a session of its own: with autogroup scheduling (Linux desktops and
#: this kind of machine) the CPU is shared fairly between sessions first, so servers left in
#: the benchmark's session would share one group's CPU with the client. ``setsid`` execs in
#: place (a Popen child never leads a process group), so the pid is still the server's.
OWN_SESSION = ["setsid"]


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Extra environment for a child started inside (Proc copies os.environ when it starts)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- servers --------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    version: str
    proc: Proc
    url: str
    request: Callable[[bytes], tuple[bytes, dict]]
    probability: Callable[[httpx.Response], float]
    notes: str
    extra_pids: list[int] = field(default_factory=list)

    def roots(self) -> list[int]:
        return [self.proc.p.pid, *self.extra_pids]

    def shape(self) -> str:
        """How many processes (and sessions, i.e. scheduling groups) the server runs."""
        stats = proc_stats()
        pids = tree([self.proc.p.pid], stats)
        return f"processes: {len(pids)}, sessions: {len({stats[pid].session for pid in pids})}"

    def freeze(self) -> None:
        signal_tree(self.roots(), signal.SIGSTOP)

    def resume(self) -> None:
        signal_tree(self.roots(), signal.SIGCONT)

    def stop(self) -> None:
        before = proc_stats()
        started = {pid: before[pid].start for pid in tree([self.proc.p.pid], before)}
        self.resume()
        self.proc.stop()
        # Workers a framework left behind when its main process went away: the same pid *and*
        # start time, so a pid the system has since given to someone else is never touched.
        after = proc_stats()
        for pid, start in started.items():
            if pid in after and after[pid].start == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class PeerApp:
    label: str  # its row in the table
    module: str  # run as ``python -m MODULE PORT`` with the peer's venv
    ready: str  # GET path answering 200 once the model is loaded
    predict: str  # POST path
    request: Callable[[bytes], tuple[bytes, dict]]
    probability: Callable[[httpx.Response], float]
    batching: str


PEER_APPS: dict[str, PeerApp] = {
    "fastapi": PeerApp("FastAPI+uvicorn (thin)", "benchmarks.peers.fastapi_app", "/health",
                       "/v1/models/roadwork:predict", v1_request, v1_probability,
                       "forward inline on the event loop, no batching"),
    "ray": PeerApp("Ray Serve", "benchmarks.peers.ray_app", "/predict", "/predict",
                   v1_request, v1_probability, "@serve.batch(8, 2 ms), one replica"),
    "litserve": PeerApp("LitServe", "benchmarks.peers.litserve_app", "/health", "/predict",
                        v1_request, v1_probability,
                        "max_batch_size 8, batch_timeout 2 ms, 1 worker, 1 API server"),
    "bentoml": PeerApp("BentoML", "benchmarks.peers.bentoml_app", "/readyz", "/predict",
                       v1_request, list_probability,
                       "adaptive batching (max 8), 1 worker, 1 thread"),
    "pytriton": PeerApp("PyTriton", "benchmarks.peers.pytriton_app",
                        "/v2/models/roadwork/ready", "/v2/models/roadwork/infer",
                        triton_request, triton_probability,
                        "dynamic batcher (max 8, 2 ms queue delay)"),
}


#: roadvision's second row: the same server answering Open Inference Protocol v2 with the
#: binary extension, the request format PyTriton is measured with.
ROADVISION_V2 = "roadvision_v2"


def start_roadvision(bundle: Path, redis: Proc, redis_url: str, extra: list[str],
                     logs: Path, protocol: str = "v1") -> Server:
    port = _free_port()
    args = [*OWN_SESSION, sys.executable, "-m", "roadvision.serving",
            "--model", f"roadwork={bundle}", "--http_port", str(port), "--redis", redis_url,
            *ROADVISION_BATCH, "--enable_latency_logging", "false", *extra]
    name = "roadvision" if protocol == "v1" else "roadvision (v2 binary)"
    proc = Proc(args, port, logs / f"{name.split()[0]}_{protocol}.log",
                f"http://127.0.0.1:{port}/v2/models/roadwork/ready")
    from importlib.metadata import version

    url, request, probability = (
        (f"http://127.0.0.1:{port}/v1/models/roadwork:predict", v1_request, v1_probability)
        if protocol == "v1" else
        (f"http://127.0.0.1:{port}/v2/models/roadwork/infer", roadvision_v2_request,
         triton_probability))
    return Server(name, version("roadvision"), proc, url, request, probability,
                  "max_batch_size 8, wait 2 ms, Redis cache"
                  + (f", {' '.join(extra)}" if extra else ""), [redis.p.pid])


def start_peer(name: str, bundle: Path, logs: Path) -> Server:
    app = PEER_APPS[name]
    python = envs.ensure(name)
    port = _free_port()
    # PYTHONPATH: the apps import benchmarks.peers, also in workers a framework starts
    # elsewhere than the benchmark's working directory. No telemetry: nothing leaves loopback.
    env = {"PEER_BUNDLE": str(bundle), "PYTHONPATH": str(envs.REPO),
           "RAY_USAGE_STATS_ENABLED": "0", "BENTOML_DO_NOT_TRACK": "True"}
    with _environ(**env):
        proc = Proc([*OWN_SESSION, str(python), "-m", app.module, str(port)], port,
                    logs / f"{name}.log", f"http://127.0.0.1:{port}{app.ready}")
    return Server(app.label, envs.installed_version(name) or "?", proc,
                  f"http://127.0.0.1:{port}{app.predict}", app.request, app.probability,
                  app.batching)


# --- clients --------------------------------------------------------------------------------

def sequential(server: Server, images: list[bytes]) -> list[float]:
    """Latency (s) of each request, one at a time on one keep-alive connection.

    The client is the standard library's ``http.client``: httpx alone adds about 1.5 ms to
    every request (measured against the same server), a cost of the client that would count
    against every server's c=1 and cached figures.
    """
    bodies = [server.request(image) for image in images]
    url = urllib.parse.urlsplit(server.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    times = []
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        for content, headers in bodies:
            start = time.perf_counter()
            connection.request("POST", path, body=content, headers=headers)
            response = connection.getresponse()
            body = response.read()
            times.append(time.perf_counter() - start)
            if response.status != 200:
                raise RuntimeError(f"{server.name}: HTTP {response.status}: {body[:300]!r}")
    finally:
        connection.close()
    return times


async def _concurrent(server: Server, images: list[bytes], concurrency: int) -> float:
    bodies = [server.request(image) for image in images]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def worker() -> None:
            while bodies:
                content, headers = bodies.pop()
                response = await client.post(server.url, content=content, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{server.name}: HTTP {response.status_code}: "
                                       f"{response.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(images) / (time.perf_counter() - start)


def throughput(server: Server, images: list[bytes], concurrency: int) -> float:
    return asyncio.run(_concurrent(server, images, concurrency))


class Reference:
    """The bare forward in this process, with the peers' own functions (peers/_common.py)."""

    def __init__(self, bundle: Path) -> None:
        import torch

        from benchmarks.peers import _common

        torch.set_num_threads(THREADS)
        self.common = _common
        self.model = _common.load_for_inference(bundle)  # as every server loads it

    def probability(self, image: bytes) -> float:
        return self.common.infer(self.model, [image])[0]

    def forward_times(self, image: bytes, count: int) -> list[float]:
        sample = self.common.decode(self.model, image)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            self.common.forward(self.model, [sample])
            times.append(time.perf_counter() - start)
        return times

    def pipeline_times(self, images: list[bytes]) -> list[float]:
        times = []
        for image in images:
            start = time.perf_counter()
            self.common.infer(self.model, [image])
            times.append(time.perf_counter() - start)
        return times


async def _answers(server: Server, images: list[bytes]) -> list[float]:
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(image: bytes) -> float:
            content, headers = server.request(image)
            response = await client.post(server.url, content=content, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{server.name}: HTTP {response.status_code}: "
                                   f"{response.text[:300]}")
            return server.probability(response)

        return await asyncio.gather(*(one(image) for image in images))


def check_answers(server: Server, reference: Reference, images: list[bytes]) -> None:
    """Fail the run when a server answers anything but the bare forward's probability for each
    image. The images go all at once, so a batcher that mixes answers up is caught too (the
    random model's probabilities differ by up to ~1e-2 between images)."""
    got = asyncio.run(_answers(server, images))
    for image, answer in zip(images, got, strict=True):
        want = reference.probability(image)
        if not abs(answer - want) <= TOLERANCE:
            raise AssertionError(f"{server.name} answered probability {answer!r}, the bare "
                                 f"forward gives {want!r} (tolerance {TOLERANCE})")


# --- one turn, one round --------------------------------------------------------------------

@dataclass
class Turn:
    """One server's figures in one round."""

    bare_p50: float
    c1: list[float]
    c16_rps: float
    cpu_c1: float  # CPU seconds per request
    cpu_c16: float
    cached: list[float] = field(default_factory=list)


def turn(server: Server, reference: Reference, fresh: Callable[[int], list[bytes]],
         args: argparse.Namespace, cached_image: bytes | None) -> Turn:
    server.resume()
    try:
        sequential(server, fresh(8))  # warm up connections, allocator, caches after the freeze
        throughput(server, fresh(2 * args.concurrency), args.concurrency)
        check_answers(server, reference, fresh(8))
        bare = reference.forward_times(fresh(1)[0], args.requests)
        cpu0 = tree_cpu(server.roots())
        c1 = sequential(server, fresh(args.requests))
        cpu1 = tree_cpu(server.roots())
        rps = throughput(server, fresh(args.throughput_requests), args.concurrency)
        cpu2 = tree_cpu(server.roots())
        cached = []
        if cached_image is not None:
            sequential(server, [cached_image])
            cached = sequential(server, [cached_image] * args.requests)
    finally:
        server.freeze()
    return Turn(_pct(bare, 50), c1, rps, (cpu1 - cpu0) / args.requests,
                (cpu2 - cpu1) / args.throughput_requests, cached)


def run_condition(servers: list[Server], reference: Reference, fresh: Callable,
                  args: argparse.Namespace, cached_image: bytes) -> dict[str, list[Turn]]:
    turns: dict[str, list[Turn]] = {server.name: [] for server in servers}
    for number in range(args.rounds):
        order = servers[number % len(servers):] + servers[:number % len(servers)]
        for server in order:
            started = time.monotonic()
            result = turn(server, reference, fresh, args,
                          cached_image if server.name == "roadvision" else None)
            turns[server.name].append(result)
            print(f"  round {number + 1}/{args.rounds} {server.name:<24} c=1 p50 "
                  f"{1000 * _pct(result.c1, 50):6.2f} ms (bare {1000 * result.bare_p50:.2f})  "
                  f"c={args.concurrency} {result.c16_rps:6.1f} req/s  "
                  f"[{time.monotonic() - started:.0f} s]", flush=True)
    return turns


# --- report ---------------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return statistics.median(values)


def table(servers: list[Server], turns: dict[str, list[Turn]], missing: dict[str, str],
          concurrency: int) -> list[str]:
    lines = [f"| server | version | c=1 p50 ms | x bare forward | c={concurrency} req/s | "
             f"CPU ms/req c=1 | CPU ms/req c={concurrency} | cached p50 ms | setup |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    every = [t for ts in turns.values() for t in ts]
    bare = _median([t.bare_p50 for t in every])
    lines.append(f"| bare forward (benchmark process) | | {1000 * bare:.2f} | 1.00 | | | | | |")
    for server in servers:
        ts = turns[server.name]
        p50 = _median([_pct(t.c1, 50) for t in ts])
        ratio = _median([_pct(t.c1, 50) / t.bare_p50 for t in ts])
        cached = (f"{1000 * _median([_pct(t.cached, 50) for t in ts]):.2f}"
                  if ts[0].cached else "")
        lines.append(
            f"| {server.name} | {server.version} | {1000 * p50:.2f} | {ratio:.2f} | "
            f"{_median([t.c16_rps for t in ts]):.1f} | "
            f"{1000 * _median([t.cpu_c1 for t in ts]):.1f} | "
            f"{1000 * _median([t.cpu_c16 for t in ts]):.1f} | {cached} | {server.notes} |")
    for label, reason in missing.items():
        lines.append(f"| {label} | | not run: {reason} | | | | | | |")
    return lines


def goals(turns: dict[str, list[Turn]], condition: str) -> str:
    """The issue's goals for roadvision in this condition, each met or not."""
    if "roadvision" not in turns:
        return ""
    mine = turns["roadvision"]
    rps = _median([t.c16_rps for t in mine])
    peers = {name: _median([t.c16_rps for t in ts]) for name, ts in turns.items()
             if not name.startswith("roadvision")}
    best = max(peers.items(), key=lambda item: item[1], default=None)
    parts = [f"c=16 >= every peer: {'met' if best is None or rps >= best[1] else 'NOT met'}"
             + (f" ({rps:.1f} vs best peer {best[0]} {best[1]:.1f} req/s)" if best else "")]
    if condition == "quiet":
        ratio = _median([_pct(t.c1, 50) / t.bare_p50 for t in mine])
        parts.append(f"c=1 p50 <= 1.15x bare forward: {'met' if ratio <= 1.15 else 'NOT met'} "
                     f"({ratio:.2f}x)")
    cached = 1000 * _median([_pct(t.cached, 50) for t in mine])
    parts.append(f"cached p50 <= 2.0 ms: {'met' if cached <= 2.0 else 'NOT met'} "
                 f"({cached:.2f} ms)")
    return "Goals (issue 12): " + "; ".join(parts) + "."


def _commit() -> str:
    """This checkout's commit, marked when the work tree has changes on top."""
    git = ["git", "-C", str(envs.REPO)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        model = next((line.split(":", 1)[1].strip() for line in handle
                      if line.startswith("model name")), "")
    import torch

    return (f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python "
            f"{platform.python_version()}, torch {torch.__version__}, {THREADS} torch thread "
            "per server")


# --- main -----------------------------------------------------------------------------------

def _settle(server: Server, reference: Reference, images: list[bytes]) -> None:
    """A started server: check its answer, note its process shape, freeze it till its turn."""
    check_answers(server, reference, images)
    server.notes += f"; {server.shape()}"
    print(f"  {server.name} {server.version} up: {server.shape()}", flush=True)
    server.freeze()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100,
                        help="c=1 requests (and bare forwards, cached requests) per turn")
    parser.add_argument("--throughput_requests", "--throughput-requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--conditions", default="quiet,loaded")
    parser.add_argument("--servers", default=",".join(["roadvision", ROADVISION_V2, *PEER_APPS]),
                        help="which to serve (roadvision and/or peers), comma-separated")
    parser.add_argument("--roadvision_args", "--roadvision-args", default="",
                        help='extra options for python -m roadvision.serving, e.g. '
                             '"--forward_workers 2"')
    parser.add_argument("--load_duty", "--load-duty", type=float, default=0.5,
                        help="share of a core each background load process uses at most")
    parser.add_argument("--preset", default="roadwork_student")
    args = parser.parse_args(argv)
    # A SIGTERM (timeout, Ctrl-C from a supervisor) still resumes and stops every server below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    conditions = [c for c in args.conditions.split(",") if c]
    names = [name for name in args.servers.split(",") if name]
    if (set(conditions) - {"quiet", "loaded"}
            or set(names) - {"roadvision", ROADVISION_V2, *PEER_APPS}):
        parser.error(f"conditions: quiet, loaded; servers: roadvision, {ROADVISION_V2}, "
                     f"{', '.join(PEER_APPS)}")

    import torch

    from roadvision.models import create_model, save_bundle

    command = "python -m benchmarks.bench_peers " + shlex.join(argv or sys.argv[1:])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    tmp = Path(tempfile.mkdtemp(prefix="bench_peers_"))
    logs = envs.env_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    torch.manual_seed(0)
    bundle = save_bundle(create_model(args.preset), tmp / "bundle")
    reference = Reference(bundle)
    seeds = iter(range(20_000_000, 30_000_000))
    fresh = lambda count: [_jpeg(next(seeds)) for _ in range(count)]  # noqa: E731
    reference.forward_times(fresh(1)[0], 10)  # warm-up
    print(f"model: {args.preset} (random init); {_machine()}; logs in {logs}", flush=True)

    servers: list[Server] = []
    missing: dict[str, str] = {}
    redis_port = _free_port()
    redis = Proc([*OWN_SESSION, "redis-server", "--port", str(redis_port), "--bind",
                  "127.0.0.1", "--save", "", "--appendonly", "no"],
                 redis_port, logs / "redis.log", None)
    results: dict[str, dict[str, list[Turn]]] = {}
    load_used: float | None = None
    started = time.monotonic()
    # A SIGTERM (a stopped run) must still reach the finally below, or the frozen peers, the
    # load processes and Redis outlive the benchmark, each in a session of its own
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if "roadvision" in names:  # never skipped: a roadvision that cannot serve fails the run
            servers.append(start_roadvision(bundle, redis, f"redis://127.0.0.1:{redis_port}/0",
                                            shlex.split(args.roadvision_args), logs))
            _settle(servers[-1], reference, fresh(1))
        if ROADVISION_V2 in names:
            servers.append(start_roadvision(bundle, redis, f"redis://127.0.0.1:{redis_port}/0",
                                            shlex.split(args.roadvision_args), logs, "v2"))
            _settle(servers[-1], reference, fresh(1))
        for name in (name for name in names if name not in ("roadvision", ROADVISION_V2)):
            print(f"starting {name} ...", flush=True)
            try:
                servers.append(start_peer(name, bundle, logs))
            except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:
                missing[PEER_APPS[name].label] = f"{error}".replace("|", "/")
                print(f"  {name} not run: {error}", flush=True)
                continue
            _settle(servers[-1], reference, fresh(1))
        print(f"servers up in {time.monotonic() - started:.0f} s", flush=True)
        if not servers:
            raise RuntimeError(f"no server could be started: {missing}")
        cached_image = fresh(1)[0]
        for condition in conditions:
            print(f"condition {condition}", flush=True)
            loaded = condition == "loaded"
            load = Load(args.load_duty, 3600, logs / "cpu_load.log") if loaded else None
            try:
                results[condition] = run_condition(servers, reference, fresh, args,
                                                   cached_image)
            finally:
                if load is not None:
                    load_used = load.stop()
        pipeline = _pct(reference.pipeline_times(fresh(args.requests)), 50)
    finally:
        for server in servers:
            server.stop()
        redis.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    n_load = os.cpu_count() or 1
    print(f"\n## serving peers\n\n`{command}` ({date}; {_commit()}; {_machine()}; total "
          f"{(time.monotonic() - started) / 60:.1f} min). Rounds: {args.rounds}, servers "
          f"interleaved; per turn {args.requests} sequential requests (c=1), "
          f"{args.throughput_requests} at c={args.concurrency}, each a new 224x224 JPEG; "
          "figures are medians over rounds. Requests: KServe v1 JSON (one base64 instance) for "
          "roadvision, FastAPI, Ray Serve, LitServe and BentoML; PyTriton and roadvision (v2 "
          "binary): v2 with Triton's binary extension (the JPEG as a BYTES tensor). CPU "
          "ms/req: user+system CPU of the server's process tree (Redis included for "
          "roadvision) per request. Every server and load process runs in its own session "
          "(autogroup scheduling shares the CPU between sessions first). Bare forward: "
          f"`predict(model, [sample])` here, sample prepared; with JPEG decode and "
          f"preprocessing {1000 * pipeline:.2f} ms p50.")
    for condition, turns in results.items():
        if condition == "quiet":
            print("\n### quiet: no background load\n")
        else:
            print(f"\n### loaded: {n_load} background processes, each burning at most "
                  f"{args.load_duty:.0%} of a core (CPU-time spin, 10 ms periods, each in its own "
                  f"session, benchmarks/peers/cpu_load.py); measured use {load_used:.2f} cores "
                  f"of {n_load}\n")
        print("\n".join(table(servers, turns, missing, args.concurrency)))
        print(f"\n{goals(turns, condition)}")


if __name__ == "__main__":
    main()
