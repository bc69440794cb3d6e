"""``mindmirror demo`` options: refused before any work, and the demo's and the ablation's own
defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindmirror.cli import build_parser, main
from mindmirror.demo.ablation import AblationSettings
from mindmirror.demo.cli import ablation_settings_from_args, settings_from_args
from mindmirror.demo.settings import DemoSettings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-size", "0"], "--train-size must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--evals", "0"], "--evals must be at least 1"),
        (["--teacher", "openai", "--api-key-env", "MINDMIRROR_TEST_NO_SUCH_KEY"], "--base-url"),
        (
            ["--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1"],
            "--teacher openai needs --model",
        ),
        (["--error-rate", "1.5"], "error_rate must be between 0 and 1"),
        (["--replay-fraction", "1"], "--replay-fraction must be in [0, 1)"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    work = tmp_path / "demo"
    code = main(["demo", "--work-dir", str(work), "--no-serve", "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (work / "student").exists()


def test_the_demo_and_the_ablation_have_their_own_defaults() -> None:
    demo = settings_from_args(build_parser().parse_args(["demo"]))
    assert (demo.label_source, demo.stage1_steps, demo.steps) == ("human", 450, 1000)
    assert demo == DemoSettings()  # the CLI's defaults are the settings' own
    assert demo.threads is None  # torch's choice
    assert (demo.drop_disagreeing, demo.replay_fraction) == (True, 0.5)
    paper = settings_from_args(
        build_parser().parse_args(["demo", "--keep-disagreeing", "--replay-fraction", "0.25"])
    )
    assert (paper.drop_disagreeing, paper.replay_fraction) == (False, 0.25)
    ablation = ablation_settings_from_args(build_parser().parse_args(["demo", "--ablation"]))
    assert (ablation.label_source, ablation.stage1_steps, ablation.steps) == ("teacher", 150, 400)
    assert ablation == AblationSettings()
    # The ablation does not rewrite the demo's settings: its own budget lives beside them.
    assert ablation.demo == DemoSettings()


@pytest.mark.parametrize(
    ("argv", "label_source", "steps"),
    [
        (["--ablation", "--label-source", "human"], "human", (150, 400)),
        (["--ablation", "--steps", "9", "--stage1-steps", "4"], "teacher", (4, 9)),
        (["--label-source", "teacher", "--steps", "9"], "teacher", (450, 9)),
    ],
)
def test_budget_options_set_the_run_they_are_given_for(
    argv: list[str], label_source: str, steps: tuple[int, int]
) -> None:
    args = build_parser().parse_args(["demo", *argv])
    settings = ablation_settings_from_args(args) if args.ablation else settings_from_args(args)
    assert settings.label_source == label_source
    assert (settings.stage1_steps, settings.steps) == steps
    if args.ablation:
        assert settings.demo == DemoSettings()


def test_the_ablation_seeds_and_error_rates(tmp_path: Path) -> None:
    argv = [
        "demo",
        "--ablation",
        "--seeds",
        "3,4",
        "--error-rates",
        "0.4,0.1",
        "--error-rate",
        "0.3",
    ]
    settings = ablation_settings_from_args(build_parser().parse_args(argv))
    assert settings.seeds == (3, 4)
    assert settings.rates == [0.1, 0.3, 0.4]  # the demo's own rate is always in
    default = ablation_settings_from_args(build_parser().parse_args(["demo", "--ablation"]))
    assert default.rates == [0.1, 0.25, 0.4]


def test_the_ablation_refuses_a_teacher_it_cannot_sweep(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "demo",
            "--ablation",
            "--work-dir",
            str(tmp_path / "demo"),
            "--no-progress",
            "--teacher",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
        ]
    )
    assert code == 2
    assert "--teacher simulated" in capsys.readouterr().err
    assert not (tmp_path / "demo" / "ablation").exists()


def test_bad_error_rates_are_refused_before_the_work_directory_is_touched(
    tmp_path: Path, capsys
) -> None:
    work = tmp_path / "demo"
    work.mkdir()
    (work / "kept").write_text("")
    code = main(["demo", "--ablation", "--fresh", "--work-dir", str(work), "--error-rates", "2"])
    assert code == 2
    assert "error rates must be between 0 and 1" in capsys.readouterr().err
    assert (work / "kept").exists()  # --fresh did not run: nothing was deleted


def test_the_ablation_rows_default_to_the_experiments_and_can_be_picked() -> None:
    from mindmirror.training.student.experiment import DEFAULT_VARIANTS

    default = ablation_settings_from_args(build_parser().parse_args(["demo", "--ablation"]))
    assert default.variants == DEFAULT_VARIANTS
    picked = ablation_settings_from_args(
        build_parser().parse_args(["demo", "--ablation", "--variants", "cot-N, cot-N-weighted"])
    )
    assert picked.variants == ("cot-N", "cot-N-weighted")


def test_an_unknown_ablation_row_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    work = tmp_path / "demo"
    code = main(["demo", "--ablation", "--work-dir", str(work), "--variants", "cot-N,best"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown ablation variant(s) best" in err
    assert "cot-N-agree" in err  # the choices are listed
    assert not work.exists()
