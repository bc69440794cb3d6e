"""Dynamic batching: one bounded queue and one batcher per endpoint, one model worker.

The boundary (as in TGI and vLLM) is hard: the HTTP layer only ever calls
:meth:`Batcher.submit` and awaits futures; only the :class:`ModelWorker` thread touches the
model. Backends release the GIL inside their runtime calls, so the event loop keeps accepting,
parsing and queueing requests while a batch runs. One thread per model, not a process: one
model per process is the deployment unit (one per GPU), and a thread passes token ids without
serialising them or holding a second copy of anything.

How a batch forms (per endpoint):

* Inputs wait in arrival order. A batch is built around the **oldest** input, so nothing
  starves.
* Only inputs of the same generation-length class (``max_new_tokens`` rounded up to a power of
  two) join it: a 16-token label never rides in a 256-token rationale batch. Among those,
  inputs whose length falls in the same power-of-two bucket as the oldest's go first, then the
  nearest buckets (length bucketing keeps padding low when traffic allows it, and still fills
  the batch when it does not).
* The batch closes when it has ``max_batch_size`` inputs, when adding the next input would
  break the token budget (rows × (longest input + most new tokens) > ``max_batch_tokens``), or
  when the oldest input has waited ``max_wait_ms``; then it waits for the model worker, taking
  whatever else arrived meanwhile (up to the limits) when the worker frees up. Under load the
  worker is always busy, so batches fill while it runs.
* The batchers (one per endpoint, and the verdict-scoring queue) share the worker through a
  FIFO lock: predict and explain never share a batch, and neither can starve the other for
  more than one batch.

A batch whose backend call raises fails only its own inputs (500 with the request ids in the
log); the batcher goes on with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mindmirror.service.backends import Row
from mindmirror.service.errors import BackendFailure, Draining, QueueFull, ServiceError
from mindmirror.service.metrics import Metrics

__all__ = ["BatchLimits", "Batcher", "ModelWorker", "WorkItem"]

logger = logging.getLogger("mindmirror.service")

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int
    max_wait_s: float
    max_batch_tokens: int
    max_queue: int


@dataclass(eq=False)
class WorkItem:
    """One generation waiting in a queue; its future gets the generated ids."""

    row: Row
    future: asyncio.Future[list[int]]
    request_id: str
    deadline: float  # time.monotonic()
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def length(self) -> int:
        return len(self.row.input_ids)

    @property
    def length_bucket(self) -> int:
        return max(self.length - 1, 0).bit_length()

    @property
    def generation_class(self) -> int:
        return max(self.row.max_new_tokens - 1, 0).bit_length()


class ModelWorker:
    """The one thread that runs model calls, and the lock that hands it to one batch at a time."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mindmirror-model")
        self.lock = asyncio.Lock()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Batcher:
    """The queue and batch loop of one endpoint."""

    def __init__(
        self,
        endpoint: str,
        worker: ModelWorker,
        generate: Callable[[Sequence[Row]], list[Any]],
        limits: BatchLimits,
        metrics: Metrics,
        *,
        generates: bool = True,
    ) -> None:
        """``generate`` runs a batch on the model worker: generated ids per row, or (with
        ``generates=False``, the scoring queue) a row of scores each, counted as no tokens."""
        self.endpoint = endpoint
        self.worker = worker
        self.generate = generate
        self.generates = generates
        self.limits = limits
        self.metrics = metrics
        self._pending: list[WorkItem] = []
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # Recent seconds per batch (exponential moving average), for Retry-After.
        self._batch_seconds = 0.05

    # ----- HTTP side -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(
        self, rows: Sequence[Row], request_id: str, deadline: float, force: bool = False
    ) -> list[WorkItem]:
        """Queue rows atomically (all or none). ``force`` skips the bound, for follow-up work
        of a request that was already admitted (explain's self-evaluation step)."""
        if self._closed:
            raise Draining("the server is shutting down; retry on another replica")
        if not force and self.depth + len(rows) > self.limits.max_queue:
            retry = self.retry_after_s()
            raise QueueFull(
                f"the {self.endpoint} queue is full ({self.depth} of {self.limits.max_queue} "
                f"inputs waiting); retry after {retry} s",
                retry,
            )
        loop = asyncio.get_running_loop()
        items = [WorkItem(row, loop.create_future(), request_id, deadline) for row in rows]
        self._pending.extend(items)
        self._publish_depth()
        self._arrived.set()
        return items

    def withdraw(self, items: Sequence[WorkItem]) -> None:
        """Nobody waits for these any more: drop the queued ones, stop the running ones."""
        gone = set(items)
        for item in items:
            item.row.cancelled.set()
            if not item.future.done():
                item.future.cancel()
        before = len(self._pending)
        self._pending = [item for item in self._pending if item not in gone]
        if len(self._pending) != before:
            self._publish_depth()

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained at the recent pace (1-60)."""
        batches = math.ceil(self.depth / self.limits.max_batch_size) + 1
        return max(1, min(60, math.ceil(batches * self._batch_seconds)))

    # ----- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.endpoint}")

    async def close(self, timeout_s: float) -> None:
        """Refuse new work, let queued work finish for up to ``timeout_s``, fail the rest."""
        self._closed = True
        deadline = time.monotonic() + timeout_s
        while (self._pending or not self._idle.is_set()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(Draining("the server shut down before this ran"))
        self._pending.clear()
        self._publish_depth()

    # ----- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self._drop_dead()
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_until_closable()
            async with self.worker.lock:
                batch = self._take()
                if not batch:
                    continue
                self._idle.clear()
                try:
                    await self._execute(batch)
                finally:
                    self._idle.set()

    async def _wait_until_closable(self) -> None:
        while True:
            self._drop_dead()
            if not self._pending:
                return
            _, full = self._select()
            remaining = self._pending[0].enqueued + self.limits.max_wait_s - time.monotonic()
            if full or remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _select(self) -> tuple[list[WorkItem], bool]:
        """The inputs the next batch would take, and whether a limit closed it."""
        oldest = self._pending[0]
        same_class = [i for i in self._pending if i.generation_class == oldest.generation_class]
        # Stable sort: nearest length bucket first, arrival order within a bucket.
        same_class.sort(key=lambda item: abs(item.length_bucket - oldest.length_bucket))
        chosen: list[WorkItem] = []
        width = new_tokens = 0
        full = False
        for item in same_class:
            w = max(width, item.length)
            m = max(new_tokens, item.row.max_new_tokens)
            if chosen and (len(chosen) + 1) * (w + m) > self.limits.max_batch_tokens:
                full = True
                continue
            chosen.append(item)
            width, new_tokens = w, m
            if len(chosen) >= self.limits.max_batch_size:
                full = True
                break
        return chosen, full

    def _take(self) -> list[WorkItem]:
        self._drop_dead()
        if not self._pending:
            return []
        chosen, _ = self._select()
        taken = set(chosen)
        self._pending = [item for item in self._pending if item not in taken]
        self._publish_depth()
        return chosen

    def _drop_dead(self) -> None:
        """Forget inputs nobody waits for (withdrawn, or past the deadline)."""
        now = time.monotonic()
        alive = []
        for item in self._pending:
            if item.future.done():
                continue
            if now >= item.deadline:
                item.row.cancelled.set()
                item.future.cancel()
                continue
            alive.append(item)
        if len(alive) != len(self._pending):
            self._pending = alive
            self._publish_depth()

    async def _execute(self, batch: list[WorkItem]) -> None:
        started = time.monotonic()
        for item in batch:
            self.metrics.queue_wait.labels(self.endpoint).observe(started - item.enqueued)
        batch_id = uuid.uuid4().hex[:12]
        try:
            results = await self.worker.call(self.generate, [item.row for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)}")
        except Exception as error:
            elapsed = time.monotonic() - started
            logger.error(
                "batch failed",
                exc_info=True,
                extra={
                    "endpoint": self.endpoint,
                    "batch_id": batch_id,
                    "batch_size": len(batch),
                    "request_ids": sorted({item.request_id for item in batch}),
                    "seconds": round(elapsed, 4),
                },
            )
            failure: ServiceError = BackendFailure(
                f"the model failed on this request's batch ({type(error).__name__}); the "
                "server is still serving, see its log for details"
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            return
        elapsed = time.monotonic() - started
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
        self.metrics.inference.labels(self.endpoint).observe(elapsed)
        self.metrics.batch_size.labels(self.endpoint).observe(len(batch))
        if self.generates:
            self.metrics.generated_tokens.labels(self.endpoint).inc(sum(len(r) for r in results))
        for item, ids in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(ids)
        logger.debug(
            "batch done",
            extra={
                "endpoint": self.endpoint,
                "batch_id": batch_id,
                "batch_size": len(batch),
                "seconds": round(elapsed, 4),
            },
        )

    def _publish_depth(self) -> None:
        self.metrics.queue_depth.labels(self.endpoint).set(len(self._pending))
