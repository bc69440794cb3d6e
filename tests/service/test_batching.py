"""The batcher's closing rules, bucketing, bounds and failure isolation, with a fake model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from mindmirror.service.backends import Row
from mindmirror.service.batching import Batcher, BatchLimits, ModelWorker
from mindmirror.service.errors import BackendFailure, Draining, QueueFull
from mindmirror.service.metrics import Metrics


class FakeModel:
    """Echoes each row's first token; records batches; can hold or fail a call."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_when = lambda rows: False

    def __call__(self, rows: Sequence[Row]) -> list[list[int]]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([list(row.input_ids) for row in rows])
        if self.fail_when(rows):
            raise ValueError("boom")
        return [[row.input_ids[0]] * 2 for row in rows]


def make_batcher(model: FakeModel, **limits: float) -> Batcher:
    values = {"max_batch_size": 4, "max_wait_s": 0.0, "max_batch_tokens": 10_000, "max_queue": 64}
    values.update(limits)
    return Batcher("predict", ModelWorker(), model, BatchLimits(**values), Metrics())


def rows(*specs: tuple[int, int]) -> list[Row]:
    """(first token, length) → a row of that length, max_new_tokens 8."""
    return [Row([token] * length, 8) for token, length in specs]


async def hold_then_submit(batcher: Batcher, model: FakeModel, pending: list[Row]) -> list:
    """Start one blocking batch, queue ``pending`` behind it, release, collect everything."""
    model.gate.clear()
    first = batcher.submit(rows((99, 3)), "r0", time.monotonic() + 30)
    await asyncio.to_thread(model.entered.wait, 5)
    items = batcher.submit(pending, "r1", time.monotonic() + 30)
    model.gate.set()
    return await asyncio.gather(*(item.future for item in first + items))


def test_batches_close_at_max_size_and_answer_each_row() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model, max_batch_size=4)
        batcher.start()
        results = await hold_then_submit(batcher, model, rows(*[(i, 3) for i in range(10)]))
        assert results == [[99, 99]] + [[i, i] for i in range(10)]
        assert [len(b) for b in model.batches] == [1, 4, 4, 2]
        await batcher.close(1)

    asyncio.run(scenario())


def test_token_budget_limits_a_batch() -> None:
    async def scenario() -> None:
        model = FakeModel()
        # rows of 10 tokens + 8 new tokens cost 18 each: a budget of 40 fits two.
        batcher = make_batcher(model, max_batch_size=8, max_batch_tokens=40)
        batcher.start()
        await hold_then_submit(batcher, model, rows(*[(i, 10) for i in range(5)]))
        assert [len(b) for b in model.batches] == [1, 2, 2, 1]
        await batcher.close(1)

    asyncio.run(scenario())


def test_length_bucketing_and_generation_classes() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model, max_batch_size=2)
        batcher.start()
        long_generation = Row([7] * 5, 256)
        pending = [*rows((1, 5), (2, 100)), long_generation, *rows((3, 6))]
        await hold_then_submit(batcher, model, pending)
        firsts = [[row[0] for row in batch] for batch in model.batches[1:]]
        # The oldest (5 tokens) goes with the nearest length (6), not the 100-token input;
        # the 256-token generation never shares a batch with the 8-token ones.
        assert firsts == [[1, 3], [2], [7]]
        await batcher.close(1)

    asyncio.run(scenario())


def test_max_wait_holds_a_lone_request_and_zero_does_not() -> None:
    async def scenario(wait: float) -> float:
        model = FakeModel()
        batcher = make_batcher(model, max_wait_s=wait)
        batcher.start()
        started = time.monotonic()
        [item] = batcher.submit(rows((1, 3)), "r", started + 30)
        await item.future
        await batcher.close(1)
        return time.monotonic() - started

    assert asyncio.run(scenario(0.3)) >= 0.29
    assert asyncio.run(scenario(0.0)) < 0.25


def test_requests_arriving_within_max_wait_share_a_batch() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model, max_wait_s=0.3)
        batcher.start()
        first = batcher.submit(rows((1, 3)), "a", time.monotonic() + 30)
        await asyncio.sleep(0.05)
        second = batcher.submit(rows((2, 3)), "b", time.monotonic() + 30)
        await asyncio.gather(*(i.future for i in first + second))
        assert [len(b) for b in model.batches] == [2]
        await batcher.close(1)

    asyncio.run(scenario())


def test_a_failing_batch_fails_only_its_rows() -> None:
    async def scenario() -> None:
        model = FakeModel()
        model.fail_when = lambda batch: any(row.input_ids[0] == 13 for row in batch)
        batcher = make_batcher(model, max_batch_size=2)
        batcher.start()
        model.gate.clear()
        blocker = batcher.submit(rows((99, 3)), "r0", time.monotonic() + 30)
        await asyncio.to_thread(model.entered.wait, 5)
        bad = batcher.submit(rows((13, 3), (14, 3)), "bad", time.monotonic() + 30)
        good = batcher.submit(rows((15, 3)), "good", time.monotonic() + 30)
        model.gate.set()
        await blocker[0].future
        for item in bad:
            with pytest.raises(BackendFailure, match="ValueError"):
                await item.future
        assert await good[0].future == [15, 15]
        # And the batcher keeps going.
        [later] = batcher.submit(rows((16, 3)), "later", time.monotonic() + 30)
        assert await later.future == [16, 16]
        await batcher.close(1)

    asyncio.run(scenario())


def test_queue_bound_is_atomic_and_force_bypasses_it() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model, max_queue=4)  # not started: nothing drains
        batcher.submit(rows((1, 3), (2, 3), (3, 3)), "a", time.monotonic() + 30)
        with pytest.raises(QueueFull) as raised:
            batcher.submit(rows((4, 3), (5, 3)), "b", time.monotonic() + 30)
        assert raised.value.retry_after_s >= 1
        assert batcher.depth == 3  # all or nothing
        batcher.submit(rows((4, 3)), "c", time.monotonic() + 30)
        batcher.submit(rows((5, 3), (6, 3)), "d", time.monotonic() + 30, force=True)
        assert batcher.depth == 6
        await batcher.close(0)

    asyncio.run(scenario())


def test_withdrawn_and_expired_rows_never_run() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model)
        metrics_depth = batcher.metrics.queue_depth.labels("predict")
        batcher.start()
        model.gate.clear()
        blocker = batcher.submit(rows((99, 3)), "r0", time.monotonic() + 30)
        await asyncio.to_thread(model.entered.wait, 5)
        withdrawn = batcher.submit(rows((1, 3)), "gone", time.monotonic() + 30)
        expired = batcher.submit(rows((2, 3)), "late", time.monotonic() + 0.05)
        kept = batcher.submit(rows((3, 3)), "kept", time.monotonic() + 30)
        assert metrics_depth._value.get() == 3
        batcher.withdraw(withdrawn)
        assert batcher.depth == 2
        assert metrics_depth._value.get() == 2
        assert withdrawn[0].row.cancelled.is_set()
        await asyncio.sleep(0.1)
        model.gate.set()
        await blocker[0].future
        assert await kept[0].future == [3, 3]
        assert expired[0].future.cancelled()
        ran = [row[0] for batch in model.batches for row in batch]
        assert ran == [99, 3]
        await batcher.close(1)

    asyncio.run(scenario())


def test_close_fails_leftovers_and_refuses_new_work() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = make_batcher(model)  # never started: its queue cannot drain
        [item] = batcher.submit(rows((1, 3)), "a", time.monotonic() + 30)
        await batcher.close(0.05)
        with pytest.raises(Draining):
            await item.future
        with pytest.raises(Draining):
            batcher.submit(rows((2, 3)), "b", time.monotonic() + 30)

    asyncio.run(scenario())


def test_predict_and_explain_batchers_share_one_worker_without_mixing() -> None:
    async def scenario() -> None:
        model = FakeModel()
        worker = ModelWorker()
        limits = BatchLimits(8, 0.0, 10_000, 64)
        metrics = Metrics()
        predict = Batcher("predict", worker, model, limits, metrics)
        explain = Batcher("explain", worker, model, limits, metrics)
        predict.start()
        explain.start()
        model.gate.clear()
        blocker = predict.submit(rows((99, 3)), "r0", time.monotonic() + 30)
        await asyncio.to_thread(model.entered.wait, 5)
        a = predict.submit(rows((1, 3), (2, 3)), "p", time.monotonic() + 30)
        b = explain.submit(rows((3, 3), (4, 3)), "e", time.monotonic() + 30)
        model.gate.set()
        await asyncio.gather(*(i.future for i in blocker + a + b))
        assert sorted(sorted(row[0] for row in batch) for batch in model.batches) == [
            [1, 2],
            [3, 4],
            [99],
        ]
        await asyncio.gather(predict.close(1), explain.close(1))
        worker.shutdown()

    asyncio.run(scenario())
