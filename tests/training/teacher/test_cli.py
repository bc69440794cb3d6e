"""`mindmirror teach ...` end to end against the fake server (in-process unless a fresh
interpreter is the point)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mindmirror.student.distillation import read_distillation_set

from mindmirror.cli import main
from tests.training.teacher.conftest import SVAMP, write_data

ROOT = Path(__file__).resolve().parents[3]


def _run_args(url: str, data: Path, store: Path, *extra: str) -> list[str]:
    return [
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
        "--no-progress",
        *extra,
    ]


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["teach", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "export", "import", "status"):
        assert command in out


def test_the_key_is_never_a_flag(
    tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Neither a real option nor an abbreviation of --api-key-env.
    assert main([*_run_args("http://x", data_file, tmp_path / "s"), "--api-key", "sk-leak"]) == 2
    err = capsys.readouterr().err
    assert "never taken from the command line" in err
    assert "sk-leak" not in err
    with pytest.raises(SystemExit) as exit_info:
        main([*_run_args("http://x", data_file, tmp_path / "s"), "--api-key-e", "X"])
    assert exit_info.value.code == 2


def test_key_comes_from_the_named_environment_variable_and_is_never_written(
    tmp_path: Path,
    data_file: Path,
    fake_server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "sk-test-SECRET-4242"
    monkeypatch.setenv("MY_TEACHER_KEY", secret)
    fake, url = fake_server()
    store = tmp_path / "s.sqlite"
    assert main([*_run_args(url, data_file, store), "--api-key-env", "MY_TEACHER_KEY"]) == 0
    assert {c.authorization for c in fake.chats} == {f"Bearer {secret}"}
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()


def test_openai_without_a_key_is_a_clear_error(
    tmp_path: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = ["teach", "run", "--task", "svamp", "--data", str(data_file)]
    code = main([*args, "--store", str(tmp_path / "s"), "--teacher", "openai", "--model", "m"])
    assert code == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    # A dry run sends nothing, so it needs no key yet.
    code = main(
        [*args, "--store", str(tmp_path / "s"), "--teacher", "openai", "--model", "m", "--dry-run"]
    )
    assert code == 0
    assert "dry run over 4 examples" in capsys.readouterr().out


def test_dry_run_counts_calls_and_cost_and_sends_nothing(
    tmp_path: Path, data_file: Path, fake_server, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = fake_server()
    store = tmp_path / "s.sqlite"
    prices = ["--input-price", "2.5", "--output-price", "10"]
    assert main([*_run_args(url, data_file, store), *prices, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert fake.chats == []
    assert not store.exists()
    assert "chain-of-thought samples: 12 (0 stored, 12 to make)" in out
    assert "self-evaluation samples:  at most 24 (0 stored" in out
    assert "requests: at most 36 with one sample each, or 16 if the endpoint honours n" in out
    assert "completion tokens ≤ 2304" in out  # 36 samples x 64
    cost = float(out.split("cost ≤ $")[1].split()[0])
    assert cost > 2304 * 10 / 1e6

    assert main([*_run_args(url, data_file, store), *prices]) == 0
    capsys.readouterr()
    served = len(fake.chats)
    assert main([*_run_args(url, data_file, store), *prices, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert len(fake.chats) == served
    assert "chain-of-thought samples: 12 (12 stored, 0 to make)" in out
    assert "self-evaluation samples:  at most 18 (18 stored" in out


def test_budget_stop_exit_status_and_partial_export(
    tmp_path: Path, data_file: Path, fake_server, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_server()
    store = tmp_path / "s.sqlite"
    out = tmp_path / "set.jsonl"
    prices = ["--input-price", "1000", "--output-price", "1000", "--max-cost", "1.5"]
    assert main([*_run_args(url, data_file, store), *prices, "--out", str(out)]) == 3
    captured = capsys.readouterr()
    assert "stopped early: --max-cost $1.5 reached" in captured.out
    assert not out.exists()
    assert main(["teach", "export", "--store", str(store), "--out", str(out)]) == 2
    assert "is not finished" in capsys.readouterr().err
    args = ["teach", "export", "--store", str(store), "--out", str(out), "--partial"]
    assert main(args) == 0
    assert len(read_distillation_set(out, SVAMP)) == 4
    capsys.readouterr()

    assert main(["teach", "status", "--store", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (run,) = status["runs"]
    assert run["cots_missing"] > 0
    assert 0 < status["totals"]["cost"] <= 1.5


def test_run_with_out_then_status(
    tmp_path: Path, data_file: Path, fake_server, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = fake_server()
    store = tmp_path / "s.sqlite"
    out = tmp_path / "set.jsonl"
    assert main([*_run_args(url, data_file, store), "--out", str(out)]) == 0
    records = read_distillation_set(out, SVAMP)
    assert [len(r.cots) for r in records] == [3, 3, 3, 3]
    assert "3 unparseable, kept with answer null" in capsys.readouterr().out
    assert main(["teach", "status", "--store", str(store)]) == 0
    text = capsys.readouterr().out
    assert "chains of thought: 12 stored, 0 missing, 3 unparseable" in text
    assert "self-evaluations:  18 stored, 0 missing" in text
    assert "calls: ok 13" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cots", "0"], "--cots must be at least 1"),
        (["--max-cost", "5"], "--max-cost needs prices"),
        (["--temperature", "3"], "temperature must be in [0, 2]"),
        (["--teacher", "nope"], "unknown teacher 'nope'"),
        (["--teacher", "local", "--batch"], "--batch needs an OpenAI-compatible teacher"),
    ],
)
def test_bad_settings_are_clear_errors(
    tmp_path: Path, data_file: Path, extra: list[str], message: str, capsys
) -> None:
    assert main([*_run_args("http://127.0.0.1:9/v1", data_file, tmp_path / "s"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_bad_files_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(_run_args("http://127.0.0.1:9/v1", missing, tmp_path / "s")) == 2
    assert "data file not found" in capsys.readouterr().err
    duplicated = tmp_path / "dup.jsonl"
    duplicated.write_text('{"id": "a", "input": "1 and 2?"}\n{"id": "a", "input": "3 and 4?"}\n')
    assert main(_run_args("http://127.0.0.1:9/v1", duplicated, tmp_path / "s")) == 2
    assert "example id 'a' appears twice" in capsys.readouterr().err
    assert main(["teach", "status", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "store not found" in capsys.readouterr().err


def test_local_dry_run_loads_no_model_and_the_cli_stays_light(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", 2)
    code = (
        "import sys\n"
        "import mindmirror.training.teacher.cli, mindmirror.training.teacher.runner\n"
        "import mindmirror.training.teacher.batch, mindmirror.training.teacher.records\n"
        "import mindmirror.training.teacher.backends.openai_backend\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "from mindmirror.cli import main\n"
        f"rc = main(['teach', 'run', '--task', 'svamp', '--data', {str(data)!r}, "
        f"'--store', {str(tmp_path / 's.sqlite')!r}, '--dry-run'])\n"
        "print('rc', rc, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "local teacher local:SmolLM2-135M-Instruct" in result.stdout
    assert "rc 0 False" in result.stdout


def test_task_spec_file_round_trip(
    tmp_path: Path, fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fake_openai import Reply

    spec = tmp_path / "sentiment.yaml"
    spec.write_text(
        "name: sentiment\n"
        "labels: [positive, negative]\n"
        "cot_exemplars:\n"
        "  - question: 'Review: A joy.'\n"
        "    answer: 'The review praises the film. So the answer is positive.'\n"
    )
    data = tmp_path / "reviews.jsonl"
    data.write_text(
        '{"id": "r1", "input": "Review: Loved it.", "label": "positive"}\n'
        '{"id": "r2", "input": "Review: Dull.", "label": "negative"}\n'
    )

    def script(body: dict, attempt: int) -> Reply:
        word = "positive" if "Loved" in body["messages"][-1]["content"] else "negative"
        return Reply(texts=[f"It reads {word}. So the answer is {word}."] * body.get("n", 1))

    _, url = fake_server(script=script)
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.sqlite"
    args = _run_args(url, Path("reviews.jsonl"), store, "--evals", "0")
    args[args.index("svamp")] = "sentiment.yaml"
    assert main(args) == 0
    # Export from another directory finds the spec by the absolute path the store kept.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["teach", "export", "--store", str(store), "--out", "set.jsonl"]) == 0
    from mindmirror.student.tasks import get_task

    records = read_distillation_set(elsewhere / "set.jsonl", get_task(spec))
    assert [c.answer for r in records for c in r.cots] == ["positive"] * 3 + ["negative"] * 3
