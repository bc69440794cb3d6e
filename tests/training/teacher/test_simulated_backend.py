"""``--teacher simulated``: the simulator through the same store, runner and export as an LLM."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mindmirror.student.distillation import DistillationRecord, load_task_examples
from mindmirror.student.tasks import Example, get_task
from mindmirror.student.tasks.arith import write_arith_data
from mindmirror.training.teacher.backends import TeacherOptions, create_backend
from mindmirror.training.teacher.backends.base import GenerationRequest, TeacherFatalError
from mindmirror.training.teacher.prompts import Planner, SamplingParams
from mindmirror.training.teacher.records import export_run
from mindmirror.training.teacher.runner import RunOptions, TeacherRunner
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set
from mindmirror.training.teacher.store import Store

from mindmirror.cli import main

ARITH = get_task("arith")
SETTINGS = {"error_rate": "0.3", "unparseable_rate": "0.1", "seed": "3"}
CONFIG = SimulatedTeacherConfig(error_rate=0.3, unparseable_rate=0.1, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    paths = write_arith_data(tmp_path_factory.mktemp("arith"), seed=1, train=40, validation=0)
    return paths["train"]


def teach(store_path: Path, examples: list[Example], extra: dict[str, str], n: int, m: int):
    backend = create_backend("simulated", TeacherOptions(extra=extra))
    params = SamplingParams(temperature=0.7, max_tokens=128, seed=None)
    planner = Planner(ARITH, backend.model_id, n, m, params, params)
    with Store(store_path) as store:
        store.bind_task("arith")
        store.add_examples(examples)
        report = asyncio.run(
            TeacherRunner(store, backend, planner, examples, RunOptions(progress=False)).run()
        )
        exported = export_run(store, report.run_id)
        totals = store.call_totals()
    return report, exported, totals


def test_through_the_store_it_gives_the_in_memory_set_and_a_rerun_calls_nothing(
    tmp_path: Path, data: Path
) -> None:
    examples = load_task_examples(ARITH, data)
    report, exported, totals = teach(tmp_path / "t.sqlite", examples, SETTINGS, 3, 2)
    assert report.complete
    assert report.cots_unparsed > 0  # unparseable_rate 0.1 over 120 chains of thought
    assert totals["cost"] == 0
    # One store-and-runner pass writes exactly what simulated_distillation_set makes in memory:
    # the same texts under the same sample indices, the same records, the same teacher id.
    expected = simulated_distillation_set(examples, 3, 2, CONFIG)
    assert exported.records == expected
    assert exported.records[0].teacher == CONFIG.model_name

    calls = totals["calls"]["ok"]
    again, exported_again, totals_again = teach(tmp_path / "t.sqlite", examples, SETTINGS, 3, 2)
    assert again.calls == again.samples == 0
    assert again.slots_done_before == report.samples
    assert totals_again["calls"]["ok"] == calls
    assert exported_again.records == exported.records

    # Other settings are another teacher: new slots, not the stored answers.
    other, exported_other, _ = teach(tmp_path / "t.sqlite", examples, {"error_rate": "0.6"}, 3, 2)
    assert other.slots_done_before == 0
    assert other.samples > 0
    assert exported_other.records[0].teacher != exported.records[0].teacher


def test_cli_teach_run_and_export(tmp_path: Path, data: Path, capsys) -> None:
    argv = [
        "teach", "run", "--teacher", "simulated", "--task", "arith", "--data", str(data),
        "--store", str(tmp_path / "t.sqlite"), "--cots", "2", "--evals", "1",
        "--teacher-option", "error_rate=0.3", "--teacher-option", "unparseable_rate=0.1",
        "--teacher-option", "seed=3", "--out", str(tmp_path / "distill.jsonl"), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote 40 records" in out
    records = [
        DistillationRecord.model_validate(json.loads(line))
        for line in (tmp_path / "distill.jsonl").read_text().splitlines()
    ]
    examples = load_task_examples(ARITH, data)
    assert records == simulated_distillation_set(examples, 2, 1, CONFIG)
    assert main(argv) == 0
    assert "0 samples from 0 calls" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra_argv", "message"),
    [
        (["--task", "svamp"], "answers only the arith task"),
        (["--task", "svamp", "--dry-run"], "answers only the arith task"),
        (["--task", "arith", "--teacher-option", "temperature=1"], "unknown --teacher-option"),
        (["--task", "arith", "--teacher-option", "error_rate=lots"], "expected a number"),
        (["--task", "arith", "--teacher-option", "error_rate=1.5"], "between 0 and 1"),
        (["--task", "arith", "--model", "gpt-4o"], "not a model"),
    ],
)
def test_clear_errors(
    tmp_path: Path, data: Path, capsys, extra_argv: list[str], message: str
) -> None:
    store = tmp_path / "t.sqlite"
    argv = ["teach", "run", "--teacher", "simulated", "--data", str(data), "--store", str(store)]
    assert main([*argv, *extra_argv]) == 2
    assert message in capsys.readouterr().err
    assert not store.exists()


def test_unlabelled_data_stops_the_run_with_the_reason(tmp_path: Path, capsys) -> None:
    data = tmp_path / "unlabelled.jsonl"
    data.write_text(json.dumps({"id": "u1", "input": "Tom has 3 apples.\nHow many?"}) + "\n")
    argv = [
        "teach", "run", "--teacher", "simulated", "--task", "arith", "--data", str(data),
        "--store", str(tmp_path / "t.sqlite"), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 2
    assert "needs the gold equation" in capsys.readouterr().err


def test_a_request_without_its_example_is_refused() -> None:
    backend = create_backend("simulated", TeacherOptions())
    request = GenerationRequest([{"role": "user", "content": "Q: 2 + 2?"}], SamplingParams())
    with pytest.raises(TeacherFatalError, match="needs the example"):
        asyncio.run(backend.generate(request))
