"""What the HTTP layer shares: the settings, the model, its batchers, and where it stands.

:class:`ServiceState` owns the service's lifecycle (start the model worker and the batchers,
load and warm up the model in the background, drain, stop) and the one way a request reaches
the batchers: :meth:`ServiceState.generator` binds the inference layer's ``generate`` to a
request's deadline and disconnect. The route dependencies on the state (``StateDep``,
``Ready``) live here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request
from mindmirror.service.backends import Row
from mindmirror.service.batching import Batcher, BatchLimits, ModelWorker, WorkItem
from mindmirror.service.errors import ClientDisconnected, Draining, NotReady, RequestTimeout
from mindmirror.service.inference import Generate, Inference
from mindmirror.service.metrics import QUEUES, SCORING_QUEUE, Metrics
from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings

__all__ = ["Ready", "ServiceState", "StateDep", "build_batchers"]

logger = logging.getLogger("mindmirror.service")


def build_batchers(
    model: StudentModel, worker: ModelWorker, limits: BatchLimits, metrics: Metrics
) -> dict[str, Batcher]:
    """One batcher per queue over one model: the endpoints' generating queues and the
    verdict-scoring queue (one decoder step per row, no tokens generated)."""
    return {
        queue: Batcher(
            queue,
            worker,
            model.score_verdicts if queue == SCORING_QUEUE else model.generate,
            limits,
            metrics,
            generates=queue != SCORING_QUEUE,
        )
        for queue in QUEUES
    }


class ServiceState:
    """What the routes share: settings, model, batchers, readiness."""

    def __init__(self, settings: Settings, model: StudentModel, metrics: Metrics) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.inference = Inference(model, settings.max_predict_inputs, settings.max_samples)
        self.key_digests = settings.api_key_digests()
        self.worker: ModelWorker | None = None
        self.batchers: dict[str, Batcher] = {}
        self.phase = "starting"  # starting → loading → warming_up → ready | failed; draining
        self.draining = False
        self.failure: str | None = None
        #: called when the model cannot load, so the server exits instead of idling unready
        self.on_fatal: Callable[[], None] | None = None
        self._load_task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.phase == "ready" and not self.draining

    async def start(self) -> None:
        self.worker = ModelWorker()
        limits = BatchLimits(
            max_batch_size=self.settings.max_batch_size,
            max_wait_s=self.settings.max_wait_ms / 1000,
            max_batch_tokens=self.settings.max_batch_tokens,
            max_queue=self.settings.max_queue,
        )
        self.batchers = build_batchers(self.model, self.worker, limits, self.metrics)
        for batcher in self.batchers.values():
            batcher.start()
        self._load_task = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        assert self.worker is not None
        try:
            self.phase = "loading"
            await self.worker.call(self.model.setup)
            self.phase = "warming_up"
            await self.worker.call(self.model.warmup, self.settings.max_batch_size)
        except Exception as error:
            self.phase = "failed"
            self.failure = f"{type(error).__name__}: {error}"
            logger.critical("the model could not be loaded; exiting", exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal()
            return
        backend = self.model.backend
        self.metrics.model_info.labels(
            self.model.manifest.task, backend.name, backend.variant, backend.device
        ).set(1)
        self.phase = "ready"
        logger.info(
            "ready",
            extra={"backend": backend.name, "variant": backend.variant, "device": backend.device},
        )

    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            logger.info("draining: refusing new work, finishing accepted requests")

    async def stop(self) -> None:
        self.begin_drain()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        # uvicorn has already waited (up to the drain timeout) for every accepted request, so
        # what is left is at most a batch nobody waits for; do not wait a second drain period.
        await asyncio.gather(*(b.close(timeout_s=1.0) for b in self.batchers.values()))
        if self.worker is not None:
            await asyncio.to_thread(self.worker.shutdown)
        self.model.close()

    def generator(self, request: Request) -> Generate:
        """The inference layer's ``generate`` for one request: its rows are queued on the
        endpoint's batcher and awaited until done, the request's deadline (504) or its
        client's disconnect (499)."""

        async def generate(endpoint: str, rows: Sequence[Row], *, force: bool = False) -> list[Any]:
            if self.draining:
                raise Draining("the server is shutting down; retry on another replica")
            batcher = self.batchers[endpoint]
            scope = request.scope.get("state", {})
            timeout_s = self.settings.request_timeout_s
            deadline = scope.get("received", time.monotonic()) + timeout_s
            items = batcher.submit(rows, scope.get("request_id", "-"), deadline, force=force)
            return await _wait(request, batcher, items, deadline, timeout_s)

        return generate


async def _wait_for_disconnect(request: Request) -> None:
    # The body was already read, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)  # some servers repeat an empty body message: do not spin


def _timeout(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request did not complete within {timeout_s:g} s (MINDMIRROR_REQUEST_TIMEOUT_S)"
    )


async def _wait(
    request: Request, batcher: Batcher, items: list[WorkItem], deadline: float, timeout_s: float
) -> list[Any]:
    results = asyncio.gather(*(item.future for item in items), return_exceptions=True)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {results, watcher},
            timeout=max(deadline - time.monotonic(), 0),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if results in done:
            outputs = results.result()
            for output in outputs:
                if isinstance(output, asyncio.CancelledError):
                    # The batcher dropped it: its deadline passed while it was queued.
                    raise _timeout(timeout_s)
                if isinstance(output, BaseException):
                    raise output
            return outputs
        batcher.withdraw(items)
        results.cancel()
        if watcher in done:
            raise ClientDisconnected("the client disconnected; its queued work was dropped")
        raise _timeout(timeout_s)
    except asyncio.CancelledError:
        batcher.withdraw(items)
        results.cancel()
        raise
    finally:
        watcher.cancel()


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def require_ready(state: StateDep) -> None:
    if state.draining:
        raise Draining("the server is shutting down; retry on another replica")
    if not state.ready:
        raise NotReady(f"the model is not ready yet ({state.phase.replace('_', ' ')})")


Ready = Annotated[None, Depends(require_ready)]
