"""``ForwardPool``: the model's forward in N worker processes, fed through shared memory.

The front process (event loop, HTTP, cache, decoding) never computes a forward: it copies a
batch's tensors into the chosen worker's arena (``tensor_arena``), sends a small message over
that worker's socket, and the event loop watches the socket (``loop.add_reader``) for the
answer, so no thread hand-off sits between a request and its forward and the forward never
holds the front's GIL. That is LitServe's design; each worker runs ``cores / N`` torch threads.

A worker that dies fails its batch with ``ForwardWorkerCrashed`` (503, Retry-After) and is
restarted in the background; the other workers keep serving meanwhile. ``start()`` and
``call_each()`` block (``load()`` runs them before the pool is swapped in); ``run()`` is the
batcher's asynchronous path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from roadvision.errors import UserError

from .errors import ForwardWorkerCrashed
from .tensor_arena import ARENA_BYTES, create_arena_file, map_arena, pack

log = logging.getLogger("roadvision.serving")

#: How long a worker may take to import torch and load its bundle.
START_TIMEOUT_S = 600.0


class ForwardWorkerError(RuntimeError):
    """A worker could not start, or its forward raised (the message says which and why)."""


class _Worker:
    """The front's handle on one worker process: its socket, arena and pending batch."""

    def __init__(self, index: int, pool: ForwardPool) -> None:
        self.index = index
        self.pool = pool
        self.arena_fd = create_arena_file(ARENA_BYTES)
        self.arena = map_arena(self.arena_fd, ARENA_BYTES)
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.pending: asyncio.Future | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # where its reader is installed
        self.healthy = False  # started and not seen dead since

    def spawn(self) -> None:
        """Start the process and wait until it has loaded the bundle (blocking)."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process (it imports torch and loads the bundle: see ``wait_ready``)."""
        ours, theirs = socket.socketpair()
        pool = self.pool
        command = [sys.executable, "-m", "roadvision.serving.forward_worker",
                   "--conn_fd", str(theirs.fileno()), "--arena_fd", str(self.arena_fd),
                   "--arena_bytes", str(ARENA_BYTES), "--bundle", str(pool.bundle),
                   "--device", pool.device, "--threads", str(pool.threads)]
        try:
            self.process = subprocess.Popen(command, pass_fds=(theirs.fileno(), self.arena_fd))
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def wait_ready(self) -> None:
        """Block until the launched process says it is ready; raise if it failed."""
        pool = self.pool
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.conn.poll(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ForwardWorkerError(f"forward worker {self.index} did not start "
                                         "(see the log above)")
        try:
            status, detail = self.conn.recv()
        except (EOFError, OSError):
            status, detail = "failed", "it exited while starting (see the log above)"
        if status == "refused":
            self.stop()
            raise UserError(detail)
        if status != "ready":
            self.stop()
            raise ForwardWorkerError(f"forward worker {self.index} failed to load "
                                     f"{pool.bundle}: {detail}")
        self.healthy = True

    def send(self, tta: str, samples: list[dict]) -> None:
        layout = pack(self.arena, samples)
        self.conn.send((tta, layout, samples if layout is None else None))

    def receive(self) -> list[dict]:
        """The answer to the last ``send`` (blocking); raises when the worker died or failed."""
        try:
            status, detail = self.conn.recv()
        except (EOFError, OSError):
            self.healthy = False
            raise self.crashed() from None
        if status != "ok":
            raise ForwardWorkerError(f"forward worker {self.index}: {detail}")
        return detail

    def crashed(self) -> ForwardWorkerCrashed:
        code = self.process.poll() if self.process is not None else None
        if code is None and self.process is not None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = "unknown"
        return ForwardWorkerCrashed(
            f"the model's forward worker stopped (exit code {code}) while computing this "
            "request; it is being restarted: retry shortly")

    def detach(self) -> None:
        """Remove the socket's reader from the loop it was installed on."""
        loop, self.loop = self.loop, None
        if loop is not None and not loop.is_closed() and self.conn is not None:
            loop.remove_reader(self.conn.fileno())

    def stop(self) -> None:
        """Close the socket (the worker exits on EOF) and reap the process."""
        self.healthy = False
        self.detach()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        process, self.process = self.process, None
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self.arena.close()
        os.close(self.arena_fd)


class ForwardPool:
    """``workers`` forward processes for one model version.

    Args:
        bundle: the bundle directory each worker loads.
        workers: processes (each computes one batch at a time).
        device: torch device for the workers.
        threads: torch threads per worker (default: this process's torch threads / workers).
    """

    def __init__(self, bundle: str | Path, *, workers: int = 1, device: str = "cpu",
                 threads: int | None = None, name: str = "model") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads is None:
            import torch

            threads = max(1, torch.get_num_threads() // workers)
        self.bundle = Path(bundle)
        self.device = device
        self.threads = threads
        self.name = name
        self.capacity = workers
        self.restarts = 0
        self._workers = [_Worker(i, self) for i in range(workers)]
        self._idle: list[_Worker] = []
        self._waiters: list[asyncio.Future] = []
        self._closed = False

    # --- blocking side (load, warm-up) ---------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each has loaded the bundle."""
        try:
            for worker in self._workers:  # all import and load at once
                worker.launch()
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        self._idle = list(self._workers)

    def call_each(self, items: list[tuple[dict, str]]) -> list[list[dict]]:
        """Run ``items`` on every worker, blocking (the warm-up: before ``run`` is used)."""
        answers = []
        for worker in self._workers:
            worker.send(items[0][1], [sample for sample, _ in items])
            answers.append(worker.receive())
        return answers

    # --- asynchronous side (the batcher) --------------------------------------------------

    async def run(self, items: list[tuple[dict, str]]) -> list[dict]:
        """The results for ``items`` (one TTA mode) from the next idle worker."""
        loop = asyncio.get_running_loop()
        worker = await self._take(loop)
        future = loop.create_future()
        worker.pending = future
        # A worker that died while idle cannot take the batch; its reader reports the death
        # (EOF) and fails the future.
        with contextlib.suppress(OSError):
            worker.send(items[0][1], [sample for sample, _ in items])
        try:
            return await future
        finally:
            worker.pending = None
            if worker.healthy and not self._closed:
                self._give_back(worker)

    async def _take(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        while not self._idle:
            if self._closed:
                raise ForwardWorkerError("the forward pool is closed")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        worker = self._idle.pop(0)
        if worker.loop is not loop:  # first use, or asyncio.run() made a new loop
            worker.detach()
            loop.add_reader(worker.conn.fileno(), self._on_readable, worker)
            worker.loop = loop
        return worker

    def _give_back(self, worker: _Worker) -> None:
        self._idle.append(worker)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                break

    def _on_readable(self, worker: _Worker) -> None:
        future = worker.pending
        try:
            results = worker.receive()
        except ForwardWorkerCrashed as exc:
            log.error("model %s: forward worker %d died: %s", self.name, worker.index, exc)
            worker.detach()
            if future is not None and not future.done():
                future.set_exception(exc)
            self._idle = [w for w in self._idle if w is not worker]
            if not self._closed:
                asyncio.get_running_loop().create_task(self._restart(worker))
            return
        except ForwardWorkerError as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(results)

    async def _restart(self, worker: _Worker) -> None:
        """Replace a dead worker (off the loop: starting one loads the bundle), retrying."""
        worker.stop()
        delay = 0.5
        while not self._closed:
            try:
                await asyncio.to_thread(worker.spawn)
            except (ForwardWorkerError, UserError):
                log.exception("model %s: restarting forward worker %d failed; retrying in "
                              "%.1f s", self.name, worker.index, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                worker.stop()
                return
            self.restarts += 1
            log.info("model %s: forward worker %d restarted (pid %d)", self.name, worker.index,
                     worker.process.pid)
            self._give_back(worker)
            return

    def close(self) -> None:
        """Stop every worker (idempotent). Call it from the loop's thread once attached."""
        if self._closed:
            return
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ForwardWorkerError("the forward pool is closed"))
        for worker in self._workers:
            worker.close()
        self._idle = []

    def pids(self) -> list[int]:
        """The live workers' process ids (for tests and logs)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def __repr__(self) -> str:
        return f"ForwardPool(model={self.name!r}, workers={self.capacity}, device={self.device!r})"

