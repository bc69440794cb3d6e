"""Batch API mode against the fake's files/batches endpoints, through the real client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mindmirror.training.teacher.backends.openai_backend import OpenAITeacher
from mindmirror.training.teacher.batch import BatchOptions, BatchRunner
from mindmirror.training.teacher.limits import Prices
from mindmirror.training.teacher.runner import RunOptions, RunReport
from mindmirror.training.teacher.store import Store

from tests.fake_openai import FakeOpenAI
from tests.training.teacher.conftest import (
    MODEL,
    SVAMP,
    examples_of,
    export_lines,
    make_planner,
    run_teacher,
)


def run_batch(
    store_path: Path, url: str, data_file: Path, cancel_when=None, **options: Any
) -> RunReport | None:
    """One batch-mode invocation; ``cancel_when(store)`` simulates Ctrl-C when it turns true."""
    examples = examples_of(data_file)
    options.setdefault("progress", False)
    options.setdefault("prices", Prices(1.0, 2.0))

    async def go() -> RunReport | None:
        backend = OpenAITeacher(model=MODEL, api_key="sk-test", base_url=url, timeout=5)
        try:
            with Store(store_path) as store:
                store.bind_task(SVAMP.name)
                store.add_examples(examples)
                runner = BatchRunner(
                    store,
                    backend,
                    make_planner(),
                    examples,
                    RunOptions(**options),
                    BatchOptions(poll_interval=0.02),
                )
                task = asyncio.create_task(runner.run())
                while cancel_when is not None and not task.done():
                    if cancel_when(store):
                        task.cancel()
                        with pytest.raises(asyncio.CancelledError):
                            await task
                        return None
                    await asyncio.sleep(0.01)
                return await task
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _input_custom_ids(fake: FakeOpenAI) -> list[list[str]]:
    """custom_ids of each uploaded batch input file, in upload order."""
    inputs = [b["input_file_id"] for b in fake.batches.values()]
    return [
        [json.loads(line)["custom_id"] for line in fake.files[file_id].decode().splitlines()]
        for file_id in inputs
    ]


def test_batch_joins_by_custom_id_and_requeues_only_failures(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    failed_first: set[str] = set()

    def line_script(custom_id: str, seen: int) -> int:
        # Two lines fail and one is missing in the first batch; all succeed when re-sent.
        if seen == 0 and len(failed_first) < 3:
            failed_first.add(custom_id)
            return 500 if len(failed_first) < 3 else 0
        return 200

    fake, url = fake_server(batch_polls=2, batch_line_script=line_script)
    report = run_batch(tmp_path / "batch.sqlite", url, data_file)
    assert report is not None
    assert report.complete, report.summary()
    rounds = _input_custom_ids(fake)
    # round 1: 4 CoT requests (n=3); round 2: the 3 that did not come back + evaluations of
    # the CoTs that did; round 3: evaluations of the re-sent CoTs.
    assert len(rounds[0]) == 4
    assert failed_first <= set(rounds[1])
    succeeded_round_1 = set(rounds[0]) - failed_first
    assert not succeeded_round_1 & {cid for later in rounds[1:] for cid in later}
    assert all(len(set(r)) == len(r) for r in rounds)
    assert report.failed_requests == 2  # the missing line is not a failure record, just absent
    assert fake.chats == []  # nothing went through the live endpoint

    # Same requests, same seeds: the batch set equals the live set from the same server.
    run_teacher(tmp_path / "live.sqlite", url, examples_of(data_file))
    assert export_lines(tmp_path / "batch.sqlite") == export_lines(tmp_path / "live.sqlite")
    with Store(tmp_path / "batch.sqlite") as store:
        totals = store.call_totals()
    assert totals["calls"] == {"ok (batch)": report.calls, "failed (batch)": 2}
    # Batch calls are billed at the discounted price.
    assert totals["cost"] == pytest.approx(
        Prices(1.0, 2.0).cost(totals["prompt_tokens"], totals["completion_tokens"], batch=True)
    )


def test_restart_polls_the_in_flight_batch_instead_of_resubmitting(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    fake, url = fake_server(batch_polls=10_000)  # never finishes until we say so
    store_path = tmp_path / "s.sqlite"
    run_batch(
        store_path,
        url,
        data_file,
        cancel_when=lambda store: any(b.batch_id for b in store.batches()),
    )
    assert fake.batch_creations == 1
    assert fake.uploads == 1
    with Store(store_path) as store:
        (record,) = store.batches(open_only=True)
    assert record.batch_id == "batch_1"

    fake.batch_polls = 1
    report = run_batch(store_path, url, data_file)
    assert report is not None
    assert report.complete
    rounds = _input_custom_ids(fake)
    # The CoT batch was created once; the restart only added the self-evaluation batch.
    assert fake.batch_creations == 2
    assert len(rounds) == 2
    assert len(rounds[0]) == 4  # CoTs
    assert len(rounds[1]) == 9  # one n=2 evaluation request per parseable CoT


def test_crash_between_upload_and_create_record(
    tmp_path: Path, data_file: Path, fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_server()
    store_path = tmp_path / "s.sqlite"
    original = Store.update_batch

    def crash_on_id(self: Store, input_file_id: str, **fields: Any) -> None:
        if "batch_id" in fields:
            raise RuntimeError("simulated crash right after batches.create")
        original(self, input_file_id, **fields)

    monkeypatch.setattr(Store, "update_batch", crash_on_id)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_batch(store_path, url, data_file)
    monkeypatch.setattr(Store, "update_batch", original)
    assert fake.batch_creations == 1
    with Store(store_path) as store:
        assert store.batches()[0].batch_id is None  # created, but not recorded

    report = run_batch(store_path, url, data_file)
    assert report is not None
    assert report.complete
    # Found by its input file: not created again (the second creation is the eval batch).
    assert fake.batch_creations == 2
    assert fake.uploads == 2


def test_crash_between_upload_and_create(
    tmp_path: Path, data_file: Path, fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_server()
    store_path = tmp_path / "s.sqlite"

    async def refuse(self: Any, **kwargs: Any) -> Any:
        raise ConnectionError("network down while creating the batch")

    from openai.resources.batches import AsyncBatches

    original = AsyncBatches.create
    monkeypatch.setattr(AsyncBatches, "create", refuse)
    with pytest.raises(ConnectionError):
        run_batch(store_path, url, data_file)
    monkeypatch.setattr(AsyncBatches, "create", original)
    assert (fake.uploads, fake.batch_creations) == (1, 0)

    report = run_batch(store_path, url, data_file)
    assert report is not None
    assert report.complete
    # The uploaded file was reused: one more upload only for the evaluation round.
    assert fake.uploads == 2
    assert fake.batch_creations == 2


def test_batch_budget_submits_only_what_fits(tmp_path: Path, data_file: Path, fake_server) -> None:
    fake, url = fake_server()
    prices = Prices(1000.0, 1000.0)
    report = run_batch(tmp_path / "s.sqlite", url, data_file, prices=prices, max_cost=1.5)
    assert report is not None
    assert report.stopped
    assert "--max-cost" in report.stopped
    assert 0 < report.cost <= 1.5
    assert not report.complete
    assert len(_input_custom_ids(fake)[0]) < 4
