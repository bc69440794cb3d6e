import sqlite3
from pathlib import Path

import pytest
from mindmirror.student.tasks import Example
from mindmirror.training.teacher.store import CallRecord, Result, Store, StoreError


def _result(key: str, text: str) -> Result:
    return Result(key=key, kind="cot", example_id="a", sample_index=0, model="m", text=text)


def test_wal_mode_and_results_are_committed_with_their_call(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.record_call(
            "r", CallRecord("cot", "ok", 1, samples_returned=1, cost=0.5), [_result("k", "hi")]
        )
    # A second, independent connection sees it: it is committed, not just buffered.
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT text FROM results WHERE key = 'k'").fetchone()[0] == "hi"
    assert db.execute("SELECT cost FROM calls").fetchone()[0] == 0.5
    db.close()


def test_first_answer_wins_and_failed_calls_are_counted(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.record_call("r", CallRecord("cot", "ok", 1, samples_returned=1), [_result("k", "1")])
        store.record_call("r", CallRecord("cot", "ok", 1, samples_returned=1), [_result("k", "2")])
        store.record_call("r", CallRecord("cot", "retry", 1, status=429, error="HTTP 429: slow"))
        assert store.get_results(["k", "missing"])["k"]["text"] == "1"
        totals = store.call_totals("r")
        assert totals["calls"] == {"ok": 2, "retry": 1}
        assert store.failures() == [(1, "retry", "HTTP 429: slow")]


def test_task_and_example_conflicts_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.bind_task("svamp")
        with pytest.raises(StoreError, match="holds task 'svamp', not 'cqa'"):
            store.bind_task("cqa")
        store.add_examples([Example("a", "q?", "1 + 1")])
        store.add_examples([Example("a", "q?", "1 + 1")])  # same content: fine
        with pytest.raises(StoreError, match="different example with id 'a'"):
            store.add_examples([Example("a", "other?", "1 + 1")])
        assert store.examples(["a"]) == [Example("a", "q?", "1 + 1")]


def test_runs_are_identified_by_their_config(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        first = store.register_run("generate", {"n": 1}, ["a", "b"])
        assert store.register_run("generate", {"n": 1}, ["a", "b"]) == first
        second = store.register_run("generate", {"n": 2}, ["a", "b"])
        assert second != first
        assert store.run()["id"] == second  # the latest used
        assert store.run(first[:6])["id"] == first
        assert store.run_example_ids(first) == ["a", "b"]
        with pytest.raises(StoreError, match="no single run"):
            store.run("zzz")


def test_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_text("this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite store"):
        Store(bad)
    with pytest.raises(StoreError, match="store not found"):
        Store(tmp_path / "none.sqlite", create=False)


def test_batch_records(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.add_batch_upload("file-1", "r", [("k1", {"slots": [["k1", 0]]})])
        (record,) = store.batches(open_only=True)
        assert (record.batch_id, record.status, record.requests) == (None, "uploaded", 1)
        store.update_batch("file-1", batch_id="batch_1", status="in_progress")
        assert store.batches()[0].batch_id == "batch_1"
        store.record_batch_output(
            "file-1",
            "r",
            [
                (
                    CallRecord("cot", "ok", 1, samples_returned=1, source="batch"),
                    [_result("k1", "x")],
                )
            ],
        )
        assert store.batches(open_only=True) == []
        assert store.batch_items("file-1") == {"k1": {"slots": [["k1", 0]]}}
        assert store.get_results(["k1"])["k1"]["text"] == "x"
