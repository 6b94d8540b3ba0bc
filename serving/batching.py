"""Micro-batching: coalesce concurrent requests into one model forward, off the event loop.

Requests ``submit()`` one item each and await its result. A single worker task takes the first
waiting item, gathers more for at most ``max_wait_ms`` (or until ``max_batch_size``), and runs
``forward(items)`` in a dedicated worker thread, so the event loop keeps answering health
checks and ``/metrics`` while the model computes (KServe's synchronous predict blocks the loop:
kserve#3950). Items that arrive during a forward are queued and form the next batch, so under
load batches fill up even with ``max_wait_ms=0`` (the same idea as Triton's dynamic batcher and
Ray Serve's ``@serve.batch``).

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
from typing import Generic, TypeVar

from . import metrics

I = TypeVar("I")  # noqa: E741 - conventional type-variable name
O = TypeVar("O")  # noqa: E741

_WAKE = object()  # queued by close() so that an idle worker notices it is retired


class MicroBatcher(Generic[I, O]):
    """Run ``forward(list[item]) -> list[result]`` on coalesced batches in one worker thread.

    Args:
        forward: blocking function; must return one result per item, in order.
        max_batch_size: most items in one forward (1 disables batching).
        max_wait_ms: how long the first item of a batch waits for company.
        group_key: items with different keys never share a forward.
        model: ``model`` label for ``roadvision_batch_size``.
    """

    def __init__(
        self,
        forward: Callable[[list[I]], Sequence[O]],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        group_key: Callable[[I], Hashable] | None = None,
        model: str = "model",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.group_key = group_key or (lambda _item: None)
        self.model = model
        self.batches_run = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[tuple[I, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retired = False
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
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"forward-{self.model}")
        if self._loop is not loop:
            self._queue = asyncio.Queue()
        self._loop = loop
        self._worker = loop.create_task(self._run(), name=f"microbatcher-{self.model}")

    async def _collect(self) -> list[tuple[I, asyncio.Future]]:
        """The next batch; may be empty when woken by close()."""
        queue = self._queue
        first = await queue.get()
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
        try:
            while True:
                batch = await self._collect()
                if batch:
                    await self._serve(batch)
                if self._retired and self._queue.empty():
                    break
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

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
            results = await self._loop.run_in_executor(self._executor, self.forward, items)
            if len(results) != len(items):
                raise RuntimeError(f"forward returned {len(results)} results for {len(items)}")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(group, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def close(self, graceful: bool = True) -> None:
        """Retire the batcher (callable from any thread, e.g. from a reload).

        ``graceful``: queued and late-arriving requests are still served; the worker thread
        exits once the queue is empty. Otherwise the worker is cancelled at once.
        """
        self._retired = True
        worker, loop = self._worker, self._loop
        if worker is None or worker.done() or loop is None or loop.is_closed():
            return
        try:
            if graceful:
                loop.call_soon_threadsafe(self._queue.put_nowait, _WAKE)
            else:
                loop.call_soon_threadsafe(worker.cancel)
        except RuntimeError:  # the loop closed in between
            pass

    def __repr__(self) -> str:
        return (f"MicroBatcher(model={self.model!r}, max_batch_size={self.max_batch_size}, "
                f"max_wait_ms={self.max_wait_s * 1000:g})")
