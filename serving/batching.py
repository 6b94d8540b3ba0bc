"""Micro-batching: coalesce concurrent requests into one model forward, off the event loop.

Requests ``submit()`` one item each and await its result. A single batcher task takes the first
waiting item, gathers more for at most ``max_wait_ms`` (or until ``max_batch_size``), and hands
the batch to a *runner*: a ``forward_workers.ForwardPool`` (the forward in worker processes,
the default) or a ``ThreadRunner`` (a blocking forward in one dedicated thread). Either way the
event loop keeps answering health checks and ``/metrics`` while the model computes (KServe's
synchronous predict blocks the loop: kserve#3950). The batcher dispatches only while the
runner has a free slot (``capacity``: one per worker), so items that arrive while every worker
is busy are queued and form the next batch: under load batches fill up even with
``max_wait_ms=0`` (the same idea as Triton's dynamic batcher and Ray Serve's
``@serve.batch``), and an idle runner gets a lone item at once.

Items that cannot share a forward (different TTA mode, different tensor shapes) are split by
``group_key`` into several forwards of one collected batch, in arrival order.

Adaptive waiting: callers that know an item is on its way (a request still decoding its image)
announce it with ``expect(n)`` and submit with ``expected=True``. Once a caller has used
``expect``, the batcher spends its ``max_wait_ms`` only while announced items are still
missing, so a lone request at low load is never delayed for company that is not coming.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, Protocol, TypeVar

from . import metrics

I = TypeVar("I")  # noqa: E741 - conventional type-variable name
O = TypeVar("O")  # noqa: E741

_WAKE = object()  # queued by close() so that an idle worker notices it is retired


class Runner(Protocol):
    """What computes a batch: ``capacity`` batches at once, each via ``await run(items)``."""

    capacity: int

    async def run(self, items: list) -> Sequence: ...

    def close(self) -> None: ...


class ThreadRunner:
    """A blocking ``forward(items) -> results`` in one dedicated thread (capacity 1).

    The in-process path (``--forward_workers 0``): no extra process, but the forward shares the
    event loop's GIL and every batch costs two thread hand-offs.
    """

    capacity = 1

    def __init__(self, forward: Callable[[list], Sequence], name: str = "model") -> None:
        self.forward = forward
        self.name = name
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def call_each(self, items: list) -> list[Sequence]:
        """``forward(items)`` here and now, as a one-worker list (the warm-up)."""
        return [self.forward(items)]

    async def run(self, items: list) -> Sequence:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"forward-{self.name}")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.forward, items)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ThreadRunner(model={self.name!r})"


class MicroBatcher(Generic[I, O]):
    """Run ``forward(list[item]) -> list[result]`` on coalesced batches.

    Args:
        forward: a runner (``capacity`` + ``async run(items)``, e.g. a ``ForwardPool``) or a
            blocking function, run in one worker thread; must return one result per item,
            in order.
        max_batch_size: most items in one forward (1 disables batching).
        max_wait_ms: how long the first item of a batch waits for company.
        group_key: items with different keys never share a forward.
        model: ``model`` label for ``roadvision_batch_size``.
        on_batch: called with each batch's items after its forward succeeded (metrics).
        linger_s: after a graceful ``close``, how long the batcher still takes late items
            (requests that were keyed on this version before a reload swapped it out) before
            it closes the runner.
    """

    def __init__(
        self,
        forward: Runner | Callable[[list[I]], Sequence[O]],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        group_key: Callable[[I], Hashable] | None = None,
        model: str = "model",
        on_batch: Callable[[list[I]], None] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.runner: Runner = (forward if hasattr(forward, "run")
                               else ThreadRunner(forward, model))
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.group_key = group_key or (lambda _item: None)
        self.model = model
        self.on_batch = on_batch
        self.linger_s = linger_s
        self.batches_run = 0
        self._queue: asyncio.Queue[tuple[I, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retired = False
        self._runner_closed = False
        self._expected = 0  # announced items not submitted yet
        self._adaptive = False  # True once a caller announces items with expect()

    def expect(self, count: int) -> None:
        """Announce ``count`` items that will be submitted soon (negative: withdraw)."""
        self._adaptive = True
        self._expected = max(0, self._expected + count)

    def enqueue(self, item: I, *, expected: bool = False) -> asyncio.Future:
        """Queue one item now (synchronously) and return the future of its result.

        ``expected``: the item was announced with ``expect`` (it is no longer missing).
        """
        if expected:
            self._expected = max(0, self._expected - 1)
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._start(loop)
        future: asyncio.Future = loop.create_future()
        self._queue.put_nowait((item, future))
        return future

    async def submit(self, item: I, *, expected: bool = False) -> O:
        """Queue one item and wait for its result (exceptions from ``forward`` propagate)."""
        return await self.enqueue(item, expected=expected)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            self._queue = asyncio.Queue()
        self._loop = loop
        self._worker = loop.create_task(self._run(), name=f"microbatcher-{self.model}")

    async def _collect(self, first_timeout: float | None = None
                       ) -> list[tuple[I, asyncio.Future]] | None:
        """The next batch; empty when woken by close(), None when nothing came in
        ``first_timeout`` seconds."""
        queue = self._queue
        try:
            first = await asyncio.wait_for(queue.get(), first_timeout)
        except TimeoutError:
            return None
        if first is _WAKE:
            return []
        batch = [first]
        deadline = self._loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                entry = queue.get_nowait()
            else:
                remaining = deadline - self._loop.time()
                if remaining <= 0 or (self._adaptive and self._expected <= 0):
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if entry is not _WAKE:
                batch.append(entry)
        return batch

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.runner.capacity)
        running: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            running.discard(task)
            slots.release()

        try:
            while True:
                await slots.acquire()  # collect only once a worker can take the batch
                batch = await self._collect(self.linger_s if self._retired else None)
                if batch is None:  # retired, and no late item came
                    slots.release()
                    break
                if batch:
                    task = self._loop.create_task(self._serve(batch))
                    running.add(task)
                    task.add_done_callback(finished)
                else:
                    slots.release()
            while running:  # retired: let the batches in flight finish
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            for task in running:  # cancelled (non-graceful close, or the loop is closing)
                task.cancel()
            if self._retired:
                self._close_runner()

    def _close_runner(self) -> None:
        if not self._runner_closed:
            self._runner_closed = True
            self.runner.close()

    async def _serve(self, batch: list[tuple[I, asyncio.Future]]) -> None:
        groups: dict[Hashable, list[tuple[I, asyncio.Future]]] = {}
        for entry in batch:
            groups.setdefault(self.group_key(entry[0]), []).append(entry)
        for group in groups.values():
            live = [(item, fut) for item, fut in group if not fut.done()]  # client gone
            if live:
                await self._forward(live)

    async def _forward(self, group: list[tuple[I, asyncio.Future]]) -> None:
        items = [item for item, _ in group]
        metrics.BATCH_SIZE.labels(self.model).observe(len(items))
        self.batches_run += 1
        try:
            results = await self.runner.run(items)
            if len(results) != len(items):
                raise RuntimeError(f"forward returned {len(results)} results for {len(items)}")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(items)
        for (_, fut), result in zip(group, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def close(self, graceful: bool = True) -> None:
        """Retire the batcher (callable from any thread, e.g. from a reload).

        ``graceful``: queued and late-arriving requests are still served; the runner is closed
        once the queue is empty and the batches in flight are done. Otherwise the batcher task
        is cancelled and the runner closed at once.
        """
        self._retired = True
        worker, loop = self._worker, self._loop
        if worker is None or worker.done() or loop is None or loop.is_closed():
            self._close_runner()  # never served (or its loop is gone): nothing in flight
            return
        try:
            if graceful:
                loop.call_soon_threadsafe(self._queue.put_nowait, _WAKE)
            else:
                loop.call_soon_threadsafe(worker.cancel)
        except RuntimeError:  # the loop closed in between
            pass

    def __repr__(self) -> str:
        return (f"MicroBatcher(model={self.model!r}, runner={self.runner!r}, "
                f"max_batch_size={self.max_batch_size}, max_wait_ms={self.max_wait_s * 1000:g})")
