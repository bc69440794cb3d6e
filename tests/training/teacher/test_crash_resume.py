"""Kill `mindmirror teach run` mid-run (SIGKILL, then Ctrl-C) and rerun: no successful call is
made twice, and the distillation set equals the one an uninterrupted run produces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mindmirror.training.teacher.records import export_run
from mindmirror.training.teacher.store import Store

from tests.training.teacher.conftest import SVAMP, examples_of, make_planner, write_data

ROOT = Path(__file__).resolve().parents[3]


def _command(url: str, data: Path, store: Path, out: Path | None = None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mindmirror",
        "teach",
        "run",
        "--task",
        "svamp",
        "--data",
        str(data),
        "--store",
        str(store),
        "--base-url",
        url,
        "--model",
        "fake-teacher",
        "--cots",
        "3",
        "--evals",
        "2",
        "--max-tokens",
        "64",
        "--seed",
        "7",
        "--n-mode",
        "off",
        "--concurrency",
        "4",
        "--no-progress",
    ]
    if out is not None:
        command += ["--out", str(out)]
    return command


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _identities(store_path: Path, data: Path) -> dict[str, str]:
    """store key -> (messages, seed) identity as the server sees it, for every stored result,
    recomputed from the plan (so it also proves the stored keys are the plan's keys)."""
    from tests.fake_openai import identity_of

    planner = make_planner()
    identities: dict[str, str] = {}
    with Store(store_path) as store:
        for example in examples_of(data):
            for slot in planner.cot_slots(example):
                identities[slot.key] = identity_of(planner.cot_messages(example), 7 + slot.index)
                row = store.get_results([slot.key]).get(slot.key)
                if row is None:
                    continue
                for eval_slot in planner.eval_slots(example, slot.index, row["text"]):
                    messages = planner.eval_messages(example, row["text"])
                    identities[eval_slot.key] = identity_of(messages, 7 + eval_slot.index)
        stored = store._db.execute("SELECT key FROM results").fetchall()
    assert all(key in identities for (key,) in stored)
    return {key: identities[key] for (key,) in stored}


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_kill_and_ctrl_c_then_rerun(tmp_path: Path, fake_server) -> None:
    data = write_data(tmp_path / "data.jsonl", 12)
    # Slow enough that the Ctrl-C below lands while the rerun still has work: at 0.05 s a
    # quiet machine finished the rerun before the signal arrived.
    fake, url = fake_server(latency=0.15)
    store = tmp_path / "s.sqlite"

    # 1. kill -9 after ~25 answers.
    process = subprocess.Popen(
        _command(url, data, store), env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    _wait_for(lambda: len(fake.successful()) >= 25)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    stored_after_kill = set(_identities(store, data).values())
    assert stored_after_kill, "nothing was committed before the kill"
    served_before = len(fake.chats)

    # 2. Ctrl-C (SIGINT) a rerun after ~15 more answers: a clean stop with exit 130.
    process = subprocess.Popen(
        _command(url, data, store), env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    _wait_for(lambda: len(fake.successful()) >= served_before + 15)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "finished work is kept" in stderr
    second_run = fake.chats[served_before:]
    assert not {c.identity for c in second_run} & stored_after_kill
    stored_after_interrupt = set(_identities(store, data).values())
    assert stored_after_interrupt > stored_after_kill
    served_before = len(fake.chats)

    # 3. Finish.
    out = tmp_path / "set.jsonl"
    finished = subprocess.run(
        _command(url, data, store, out), env=_env(), cwd=ROOT, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    third_run = fake.chats[served_before:]
    assert third_run
    assert not {c.identity for c in third_run} & stored_after_interrupt

    # Every slot was answered successfully once, except calls that were in flight when a
    # process died (at most --concurrency per interruption) and so were never stored.
    successes: dict[str, int] = {}
    for call in fake.successful():
        successes[call.identity] = successes.get(call.identity, 0) + 1
    duplicates = sum(count - 1 for count in successes.values())
    assert duplicates <= 2 * 4
    final = _identities(store, data)
    assert set(successes) == set(final.values())

    # 4. Same distillation set as one uninterrupted run against the same server.
    reference = tmp_path / "reference.sqlite"
    reference_out = tmp_path / "reference.jsonl"
    uninterrupted = subprocess.run(
        _command(url, data, reference, reference_out),
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert out.read_text() == reference_out.read_text()
    with Store(store) as opened:
        records = export_run(opened, None, SVAMP).records
    assert len(records) == 12
    assert sum(len(r.cots) for r in records) == 36
