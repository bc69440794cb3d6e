"""The live runner against a scripted OpenAI-compatible server, through the real client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mindmirror.student.distillation import DistillationRecord, parse_stats
from mindmirror.training.teacher.backends.base import TeacherFatalError
from mindmirror.training.teacher.limits import Prices, RetryPolicy
from mindmirror.training.teacher.store import Store

from tests.fake_openai import Reply, identity_of
from tests.training.teacher.conftest import (
    SVAMP,
    examples_of,
    export_lines,
    make_planner,
    run_teacher,
)

# 4 examples (q3 draws malformed CoTs), N=3, M=2: 12 CoTs, 9 parseable -> 18 evaluations.
COTS, EVALS, PARSEABLE_COTS = 12, 18, 9


def _question(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def test_n_honoured_one_request_per_prompt(tmp_path: Path, data_file: Path, fake_server) -> None:
    fake, url = fake_server()
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file))
    # 4 CoT requests with n=3, then one n=2 request per parseable CoT.
    assert report.calls == 4 + PARSEABLE_COTS == len(fake.successful())
    assert sorted(c.n for c in fake.chats) == [2] * PARSEABLE_COTS + [3] * 4
    assert report.samples == COTS + EVALS
    assert report.complete
    assert report.cots_unparsed == 3
    assert report.evals_unparsed == 0
    with Store(tmp_path / "s.sqlite") as store:
        assert store.get_meta(f"supports_n:openai:{url}:fake-teacher") == "1"
        totals = store.call_totals()
    assert totals["calls"] == {"ok": report.calls}
    assert totals["prompt_tokens"] == report.prompt_tokens > 0
    assert totals["cost"] == pytest.approx(report.cost)
    assert report.cost > 0

    records = [DistillationRecord.model_validate(r) for r in export_lines(tmp_path / "s.sqlite")]
    assert [r.id for r in records] == ["q0", "q1", "q2", "q3"]
    malformed = records[3]
    # Flagged, kept, counted, never turned into a label, and not self-evaluated.
    assert [c.answer for c in malformed.cots] == [None, None, None]
    assert all(c.text.startswith("I am not sure") for c in malformed.cots)
    assert all(c.self_evaluations == [] for c in malformed.cots)
    assert malformed.label == "5 + 6"
    stats = parse_stats(SVAMP, records)
    assert (stats.cots, stats.cots_parsed, stats.self_evaluations) == (12, 9, 18)

    # A rerun finds everything stored: zero calls.
    again = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file))
    assert again.calls == 0
    assert again.slots_done_before == COTS + EVALS
    assert len(fake.chats) == report.calls


def test_endpoint_that_ignores_n_is_detected(tmp_path: Path, data_file: Path, fake_server) -> None:
    fake, url = fake_server(honour_n=False)  # like llama.cpp server
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), concurrency=1)
    assert report.complete
    assert report.samples == COTS + EVALS
    # One request found out; every later request asked for one sample.
    assert [c.n for c in fake.chats].count(3) == 1
    assert all(c.n == 1 for c in fake.chats[1:])
    assert report.calls == COTS + EVALS == len(fake.successful())
    with Store(tmp_path / "s.sqlite") as store:
        assert store.get_meta(f"supports_n:openai:{url}:fake-teacher") == "0"
    # The slots are the same as with an n>1 endpoint: a rerun against one makes no call.
    other, other_url = fake_server()
    with Store(tmp_path / "s.sqlite") as store:
        store.set_meta(f"supports_n:openai:{other_url}:fake-teacher", "1")
    assert run_teacher(tmp_path / "s.sqlite", other_url, examples_of(data_file)).calls == 0
    assert other.chats == []


def test_n_mode_off_sends_one_sample_per_request(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    fake, url = fake_server()
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), n_mode="off")
    assert report.calls == COTS + EVALS
    assert {c.n for c in fake.chats} == {1}
    # Seeds make each single-sample request distinct: seed + sample index.
    seeds = sorted(c.body["seed"] for c in fake.chats if c.kind == "cot")
    assert seeds == sorted([7, 8, 9] * 4)


def test_429_500_and_timeouts_are_retried_honouring_retry_after(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    def script(body: dict[str, Any], attempt: int) -> Reply | None:
        question = _question(body)
        if body["messages"][0]["content"].startswith("You check"):
            return None
        if "Tom has 3" in question and attempt == 0:
            return Reply(status=429, retry_after=0.6)
        if "Ana had 10" in question and attempt < 2:
            return Reply(status=500)
        if "A box holds" in question and attempt == 0:
            return Reply(delay=3.0)  # the client gives up after its 0.5 s timeout
        return None

    fake, url = fake_server(script=script)
    started = time.monotonic()
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), timeout=0.5)
    assert report.complete
    assert report.samples == COTS + EVALS
    assert report.retries == 1 + 2 + 1
    assert report.failed_requests == 0
    assert report.attempts == report.calls + report.retries
    tom = [c for c in fake.chats if "Tom has 3" in _question(c.body) and c.kind == "cot"]
    assert [c.status for c in tom] == [429, 200]
    # Backoff base is 10 ms: only Retry-After explains a 0.6 s gap.
    assert tom[1].at - tom[0].at >= 0.6
    ana = [c.status for c in fake.chats if "Ana had 10" in _question(c.body) and c.kind == "cot"]
    assert ana == [500, 500, 200]
    box = [c for c in fake.chats if "A box holds" in _question(c.body) and c.kind == "cot"]
    assert [c.delay for c in box] == [3.0, 0.0]
    assert time.monotonic() - started < 10
    with Store(tmp_path / "s.sqlite") as store:
        totals = store.call_totals()
        failures = {error for _, _, error in store.failures(limit=10)}
    assert totals["calls"] == {"ok": report.calls, "retry": 4}
    assert "request timed out" in failures
    assert any(error.startswith("HTTP 429") for error in failures)


def test_gives_up_after_max_retries_and_a_rerun_finishes(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    broken = {"on": True}

    def script(body: dict[str, Any], attempt: int) -> Reply | None:
        if broken["on"] and "Ana had 10" in _question(body):
            return Reply(status=502)
        return None

    fake, url = fake_server(script=script)
    retry = RetryPolicy(max_retries=2, base=0.01, cap=0.02)
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), retry=retry)
    assert not report.complete
    assert report.failed_requests == 1
    assert report.slots_left == 3  # q1's three CoTs
    assert [c.status for c in fake.chats if "Ana had 10" in _question(c.body)] == [502] * 3
    first_run = {c.identity for c in fake.successful()}

    broken["on"] = False
    before = len(fake.chats)
    again = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), retry=retry)
    assert again.complete
    rerun = fake.chats[before:]
    assert rerun
    assert all("Ana had 10" in _question(c.body) for c in rerun)
    assert not {c.identity for c in rerun} & first_run
    assert len(export_lines(tmp_path / "s.sqlite")) == 4


def test_auth_failure_stops_the_run(tmp_path: Path, data_file: Path, fake_server) -> None:
    fake, url = fake_server(script=lambda body, attempt: Reply(status=401))
    with pytest.raises(TeacherFatalError, match="refused the API key"):
        run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file), concurrency=2)
    assert len(fake.chats) <= 2  # no retries, no further requests


def test_rejected_requests_are_recorded_and_stop_when_all_fail(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    def script(body: dict[str, Any], attempt: int) -> Reply | None:
        return Reply(status=400) if body.get("n") == 9 else None

    _fake, url = fake_server(script=script)
    examples = examples_of(data_file)
    planner = make_planner(cots=9, evals=0)
    report = run_teacher(tmp_path / "s.sqlite", url, examples, planner=planner)
    assert report.failed_requests == 4
    assert report.slots_left == 36
    assert report.retries == 0  # a 400 is not retried
    with pytest.raises(TeacherFatalError, match="in a row were rejected"):
        run_teacher(tmp_path / "s.sqlite", url, examples, planner=planner, max_rejected_in_a_row=2)


def test_max_cost_stops_before_exceeding_the_budget(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    fake, url = fake_server(latency=0.05)
    prices = Prices(input_per_million=1000.0, output_per_million=1000.0)  # ~$0.3 per call
    max_cost = 2.0
    examples = examples_of(data_file)
    report = run_teacher(
        tmp_path / "s.sqlite", url, examples, prices=prices, max_cost=max_cost, concurrency=4
    )
    assert report.stopped
    assert "--max-cost" in report.stopped
    assert 0 < report.cost <= max_cost
    assert report.slots_left > 0
    assert not report.complete
    with Store(tmp_path / "s.sqlite") as store:
        assert store.call_totals()["cost"] <= max_cost
    paid = {c.identity for c in fake.successful()}
    assert len(paid) == report.calls
    # Continue without a cap: nothing paid for is requested again.
    before = len(fake.chats)
    rest = run_teacher(tmp_path / "s.sqlite", url, examples, prices=prices)
    assert rest.complete
    assert not {c.identity for c in fake.chats[before:]} & paid


def test_missing_usage_is_estimated_and_shown(tmp_path: Path, data_file: Path, fake_server) -> None:
    _fake, url = fake_server(script=lambda body, attempt: Reply(usage=False))
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data_file))
    assert report.usage_estimated
    assert report.prompt_tokens > 0
    assert report.cost > 0
    assert "estimated" in report.summary()


def test_malformed_self_evaluations_and_empty_answers_are_flagged(
    tmp_path: Path, data_file: Path, fake_server
) -> None:
    def script(body: dict[str, Any], attempt: int) -> Reply | None:
        n = body.get("n", 1)
        if body["messages"][0]["content"].startswith("You check") and "Tom has 3" in _question(
            body
        ):
            return Reply(texts=["Looks fine to me."] * n)
        if "Sam ran" in _question(body):
            return Reply(texts=[""] * n)
        return None

    data = tmp_path / "data.jsonl"
    from tests.training.teacher.conftest import write_data

    write_data(data, 5)
    _fake, url = fake_server(script=script)
    report = run_teacher(tmp_path / "s.sqlite", url, examples_of(data))
    assert report.evals_unparsed == 6  # Tom's 3 CoTs x 2 evaluations
    assert report.cots_unparsed == 3 + 3  # q3 malformed, q4 empty
    records = export_lines(tmp_path / "s.sqlite")
    tom = records[0]
    assert all(e["verdict"] is None for c in tom["cots"] for e in c["self_evaluations"])
    assert all(e["text"] == "Looks fine to me." for c in tom["cots"] for e in c["self_evaluations"])
    assert [c["answer"] for c in records[4]["cots"]] == [None] * 3


def test_rpm_limit_slows_requests(tmp_path: Path, data_file: Path, fake_server) -> None:
    fake, url = fake_server()
    planner = make_planner(cots=5, evals=0)
    started = time.monotonic()
    report = run_teacher(
        tmp_path / "s.sqlite", url, examples_of(data_file), planner=planner, n_mode="off", rpm=600
    )
    elapsed = time.monotonic() - started
    assert report.calls == 20
    # 10 requests/s with a 1 s burst of 10: 20 requests need at least 1 s, and the limiter
    # holds the requests themselves: the server gets the last one no sooner than 1 s after the
    # run started. (Measured from the first arrival instead, a slow first connection on a busy
    # machine shortens the span though the limiter did its job.)
    assert elapsed >= 0.95
    assert fake.chats[-1].at - started >= 0.95


def test_identity_helper_matches_the_plan(data_file: Path) -> None:
    planner = make_planner()
    example = examples_of(data_file)[0]
    messages = planner.cot_messages(example)
    assert identity_of(messages, 7) != identity_of(messages, 8)
