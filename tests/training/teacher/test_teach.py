"""``teach(config)`` called as a library: the simulated teacher, the fake OpenAI-compatible
server, a dry run, a budget stop, and the config as the one home of the CLI's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from mindmirror.student.distillation import load_task_examples, read_distillation_set
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import get_task
from mindmirror.student.tasks.arith import write_arith_data
from mindmirror.training.teacher.backends.simulated import SimulatedBackend
from mindmirror.training.teacher.limits import Prices, RetryPolicy
from mindmirror.training.teacher.prompts import SamplingParams
from mindmirror.training.teacher.runner import RunOptions
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set
from mindmirror.training.teacher.teach import TeachConfig, teach

from mindmirror.cli import build_parser
from tests.training.teacher.conftest import MODEL, SVAMP

ARITH = get_task("arith")


@pytest.fixture(scope="module")
def arith_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arith_data(tmp_path_factory.mktemp("arith"), seed=2, train=12, validation=0)[
        "train"
    ]


def simulated(data: Path, store: Path, **fields) -> TeachConfig:
    fields.setdefault("teacher_options", {"error_rate": "0.3", "seed": "1"})
    return TeachConfig(
        task="arith", data=data, store=store, teacher="simulated", progress=False, **fields
    )


def test_the_simulated_teacher_through_teach_gives_its_in_memory_set(
    tmp_path: Path, arith_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = []
    original = SimulatedBackend.check_task

    def counted(self: SimulatedBackend, task) -> None:
        checks.append(task.name)
        original(self, task)

    monkeypatch.setattr(SimulatedBackend, "check_task", counted)
    out = tmp_path / "distill.jsonl"
    config = simulated(arith_data, tmp_path / "t.sqlite", cots=2, evals=1, out=out)
    report = teach(config)
    assert checks == ["arith"]  # asked once, by teach(); the runner does not ask again
    assert report.complete
    assert report.model_id == SimulatedTeacherConfig(error_rate=0.3, seed=1).model_name
    assert report.written is not None
    assert report.written.count == 12
    assert report.written.message().startswith(f"wrote 12 records to {out}: 24 chains of thought")
    examples = load_task_examples(ARITH, arith_data)
    expected = simulated_distillation_set(examples, 2, 1, SimulatedTeacherConfig(0.3, seed=1))
    assert read_distillation_set(out, ARITH) == expected

    # A second call finds everything in the store and asks the teacher nothing.
    again = teach(config)
    assert again.run is not None
    assert (again.run.samples, again.run.calls) == (0, 0)
    assert again.run.slots_done_before == report.run.samples == 48
    assert checks == ["arith", "arith"]


def test_a_dry_run_counts_and_creates_nothing(tmp_path: Path, arith_data: Path) -> None:
    store = tmp_path / "t.sqlite"
    report = teach(simulated(arith_data, store, cots=3, evals=2, dry_run=True))
    assert report.run is None
    assert report.written is None
    assert not report.complete
    assert report.estimate is not None
    assert (report.estimate.examples, report.estimate.cot_slots) == (12, 36)
    assert report.estimate.eval_slots_max == 72
    assert "dry run over 12 examples" in report.estimate.summary(report.prices, batch=False)
    assert not store.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "svamp"}, "answers only the arith task"),
        ({"task": "svamp", "dry_run": True}, "answers only the arith task"),
        ({"batch": True}, "--batch needs an OpenAI-compatible teacher"),
        ({"max_cost": 1.0}, "--max-cost needs prices"),
        ({"temperature": 3.0}, "temperature must be in [0, 2]"),
    ],
)
def test_bad_settings_raise_before_the_store_is_touched(
    tmp_path: Path, arith_data: Path, fields: dict, message: str
) -> None:
    store = tmp_path / "t.sqlite"
    config = simulated(arith_data, store).model_copy(update=fields)
    with pytest.raises(MindmirrorError, match=message.replace("[", r"\[")):
        teach(config)
    assert not store.exists()


def test_prices_come_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINDMIRROR_TEACH_INPUT_PRICE", "2.5")
    monkeypatch.delenv("MINDMIRROR_TEACH_OUTPUT_PRICE", raising=False)
    config = TeachConfig(task="svamp", data=tmp_path / "d.jsonl")
    assert config.prices() == Prices(2.5, 0.0)
    assert config.model_copy(update={"input_price": 1.0}).prices() == Prices(1.0, 0.0)
    monkeypatch.setenv("MINDMIRROR_TEACH_OUTPUT_PRICE", "lots")
    with pytest.raises(MindmirrorError, match="MINDMIRROR_TEACH_OUTPUT_PRICE='lots' is not a num"):
        config.prices()


def test_an_openai_compatible_teacher_through_teach(
    tmp_path: Path, data_file: Path, fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINDMIRROR_TEST_KEY", "sk-test")
    fake, url = fake_server()
    out = tmp_path / "set.jsonl"
    config = TeachConfig(
        task="svamp",
        data=data_file,
        store=tmp_path / "s.sqlite",
        base_url=url,  # the teacher is openai when a base URL is given
        model=MODEL,
        api_key_env="MINDMIRROR_TEST_KEY",
        cots=3,
        evals=2,
        max_tokens=64,
        seed=7,
        progress=False,
        out=out,
    )
    assert config.teacher_name == "openai"
    report = teach(config)
    assert report.complete
    assert report.teacher == f"openai-compatible teacher {MODEL} at {url}"
    assert {chat.authorization for chat in fake.successful()} == {"Bearer sk-test"}
    records = read_distillation_set(out, SVAMP)
    assert [len(record.cots) for record in records] == [3, 3, 3, 3]
    assert report.written is not None
    assert report.written.stats.cots_parsed == 9
    served = len(fake.chats)
    assert teach(config).run.samples == 0
    assert len(fake.chats) == served


def test_a_run_stopped_by_its_budget_is_incomplete_and_exports_nothing(
    tmp_path: Path, data_file: Path, fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    _, url = fake_server()
    out = tmp_path / "set.jsonl"
    config = TeachConfig(
        task="svamp",
        data=data_file,
        store=tmp_path / "s.sqlite",
        base_url=url,
        model=MODEL,
        cots=3,
        evals=2,
        max_tokens=64,
        input_price=1000,
        output_price=1000,
        max_cost=1.5,
        progress=False,
        out=out,
    )
    report = teach(config)
    assert not report.complete
    assert report.run is not None
    assert report.run.stopped.startswith("--max-cost $1.5 reached")
    assert report.written is None
    assert not out.exists()


def test_the_config_holds_the_defaults_the_cli_does_not_repeat() -> None:
    config = TeachConfig(task="svamp", data=Path("d.jsonl"))
    # The parts' own defaults, read from them.
    assert config.cot_params() == config.eval_params() == SamplingParams()
    assert (config.concurrency, config.max_retries) == (RunOptions.concurrency, 6)
    assert config.backoff == RetryPolicy.base
    assert (config.cots, config.evals, config.store) == (5, 5, Path("teacher.sqlite"))
    # The run parser sets no default of its own for an option the config has.
    args = build_parser().parse_args(["teach", "run", "--task", "svamp", "--data", "d.jsonl"])
    given = {
        name: getattr(args, name)
        for name in TeachConfig.model_fields
        if getattr(args, name, None) not in (None, False, [])
    }
    assert given == {"task": "svamp", "data": Path("d.jsonl")}


def test_config_field_errors_are_worded_as_the_flags(tmp_path: Path, capsys) -> None:
    from mindmirror.cli import main

    argv = ["teach", "run", "--task", "svamp", "--data", str(tmp_path / "d.jsonl")]
    assert main([*argv, "--shots", "-1", "--concurrency", "0"]) == 2
    err = capsys.readouterr().err
    assert "--shots must be 0 or more" in err
    assert "--concurrency must be at least 1" in err
