"""``mindmirror distill`` / ``evaluate`` / ``experiment``: clear errors and the happy paths."""

import json
import shutil
from pathlib import Path

import pytest
from mindmirror.student.bundle import load_manifest
from mindmirror.student.distillation import write_distillation_set
from mindmirror.student.tasks.arith import generate_problems
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set

from mindmirror.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def distill_args(data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "distill", "--data", data, "--output", output, "--student", "scratch:micro",
        "--max-steps", "2", "--no-progress", *extra,
    ]  # fmt: skip


def test_distill_missing_file(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, *distill_args(tmp_path / "nope.jsonl", tmp_path / "b"))
    assert code == 2
    assert "error: data not found" in err
    assert "nope.jsonl" in err


def test_distill_malformed_line_names_its_number(capsys, train_data: Path, tmp_path) -> None:
    data = tmp_path / "broken.jsonl"
    lines = train_data.read_text().splitlines()[:3]
    data.write_text("\n".join([lines[0], lines[1], '{"id": "x", "task": ', lines[2]]) + "\n")
    code, _, err = run(capsys, *distill_args(data, tmp_path / "b", "--task", "arith"))
    assert code == 2
    assert "broken.jsonl:3: malformed JSON" in err


def test_distill_unknown_task(capsys, train_data: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, *distill_args(train_data, tmp_path / "b", "--task", "nope"))
    assert code == 2
    assert "unknown task 'nope'" in err
    assert "svamp" in err


def test_distill_student_not_t5(capsys, train_data: Path, tmp_path: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    code, _, err = run(
        capsys, *distill_args(train_data, tmp_path / "b", "--student", tmp_path / "gpt2")
    )
    assert code == 2
    assert "is not a T5 checkpoint" in err
    assert not (tmp_path / "b").exists()


def test_distill_no_usable_cots(capsys, tmp_path: Path) -> None:
    # A teacher that never states a final equation.
    never_answers = SimulatedTeacherConfig(unparseable_rate=1.0)
    examples = [problem.example() for problem in generate_problems(4)]
    records = simulated_distillation_set(examples, 2, 1, never_answers)
    data = tmp_path / "useless.jsonl"
    write_distillation_set(data, records)
    code, _, err = run(capsys, *distill_args(data, tmp_path / "b", "--val-fraction", "0"))
    assert code == 2
    assert "no usable chains of thought" in err
    assert "8 CoTs without a parseable answer" in err


def test_distill_bad_option_names_the_flag(capsys, train_data: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, *distill_args(train_data, tmp_path / "b", "--alpha", "1.5"))
    assert code == 2
    assert "--alpha" in err
    code, _, err = run(capsys, *distill_args(train_data, tmp_path / "b", "--student", "scratch:xl"))
    assert code == 2
    assert "unknown from-scratch size" in err


def test_distill_refuses_to_overwrite(capsys, trained, train_data: Path) -> None:
    code, _, err = run(capsys, *distill_args(train_data, trained.bundle))
    assert code == 2
    assert "already exists; pass --force" in err


def test_evaluate_missing_bundle(capsys, test_data: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "evaluate", tmp_path / "nothing", "--data", test_data)
    assert code == 2
    assert "bundle directory not found" in err


def test_evaluate_corrupted_bundle(capsys, trained, test_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(trained.bundle, copy)
    (copy / "tokenizer.json").write_text("{}")
    code, _, err = run(capsys, "evaluate", copy, "--data", test_data)
    assert code == 2
    assert "checksum mismatch for tokenizer.json" in err


def test_evaluate_prints_and_records(capsys, trained, test_data: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained.bundle, bundle)
    predictions = tmp_path / "predictions.jsonl"
    code, out, _ = run(
        capsys, "evaluate", bundle, "--data", test_data, "--no-progress",
        "--predictions", predictions,
    )  # fmt: skip
    assert code == 0
    assert "accuracy" in out
    assert "self-evaluation verdicts" in out
    manifest = load_manifest(bundle)  # rewritten with valid checksums
    by_target = {result.target: result for result in manifest.evaluations}
    assert set(by_target) == {"task", "self_evaluation"}
    task_result = by_target["task"]
    assert task_result.split == "test"
    assert task_result.examples == 20
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 20
    assert task_result.accuracy == round(sum(row["correct"] for row in rows) / 20, 4)
    verdicts = by_target["self_evaluation"]
    assert set(verdicts.per_class) == {"correct", "wrong", "uncertain"}
    assert verdicts.examples == sum(int(v["support"]) for v in verdicts.per_class.values())
    # Evaluating the same data again replaces the results instead of piling them up.
    code, _, _ = run(capsys, "evaluate", bundle, "--data", test_data, "--no-progress")
    assert code == 0
    assert len(load_manifest(bundle).evaluations) == 2


def test_evaluate_plain_task_data(capsys, trained, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained.bundle, bundle)
    data = tmp_path / "plain.jsonl"
    data.write_text(
        '{"input": "Tom has 20 apples. Tom finds 4 more apples.\\nHow many apples now?", '
        '"label": "( 20.0 + 4.0 )"}\n{"input": "unlabelled question"}\n'
    )
    code, _out, err = run(capsys, "evaluate", bundle, "--data", data, "--no-progress")
    assert code == 0
    assert "1 unlabelled examples skipped" in err
    (result,) = load_manifest(bundle).evaluations
    assert (result.split, result.examples, result.target) == ("plain", 1, "task")


def test_distill_cleaning_flags_parse_into_the_config(train_data: Path, tmp_path: Path) -> None:
    from mindmirror.training.student.cli import _config

    from mindmirror.cli import build_parser

    argv = ["distill", "--data", str(train_data), "-o", str(tmp_path / "b"), "--task", "arith"]
    paper = _config(build_parser().parse_args(argv), tmp_path / "b")
    assert (paper.label_source, paper.drop_judged_wrong, paper.drop_disagreeing) == (
        "teacher",
        False,
        False,
    )
    cleaned = _config(
        build_parser().parse_args(
            [
                *argv,
                "--label-source",
                "weighted-majority",
                "--drop-judged-wrong",
                "--drop-disagreeing",
            ]
        ),
        tmp_path / "b",
    )
    assert (cleaned.label_source, cleaned.drop_judged_wrong, cleaned.drop_disagreeing) == (
        "weighted-majority",
        True,
        True,
    )


def test_distill_refuses_the_agreement_filter_with_teacher_labels(
    capsys, train_data: Path, tmp_path: Path
) -> None:
    code, _, err = run(capsys, *distill_args(train_data, tmp_path / "b", "--drop-disagreeing"))
    assert code == 2
    assert "--drop-disagreeing needs --label-source human, majority or weighted-majority" in err
    assert not (tmp_path / "b").exists()


def test_distill_help_names_the_papers_setting(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "teacher = each CoT's own answer (the paper's)" in out
    assert "--drop-judged-wrong" in out
    assert "--drop-disagreeing" in out
