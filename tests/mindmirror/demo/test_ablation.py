"""``mindmirror demo --ablation``: Table 1 over seeds and teacher error rates, plot, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mindmirror.demo.ablation import AblationSettings, plot_accuracy, run_ablation, table_markdown
from tests.mindmirror.demo.tiny import TINY

# The paper's baseline, ours and the two cleaning rows: every kind of row, at a CI-sized cost.
VARIANTS = ["standard", "ours", "cot-N-drop", "cot-N-agree"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("ablation") / "run"
    settings = AblationSettings(
        demo=replace(TINY, work_dir=work, serve=False, test=20),
        seeds=(0, 1),
        error_rates=(0.0,),
        stage1_steps=6,
        steps=12,
        variants=tuple(VARIANTS),
    )
    return settings, run_ablation(settings)


@pytest.mark.slow
def test_every_variant_seed_and_error_rate_is_trained_and_reported(ablation) -> None:
    settings, tables = ablation
    assert sorted(tables) == [0.0, settings.demo.error_rate]  # the demo's own rate is always in
    out = settings.demo.work_dir / "ablation"
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["seeds"] == [0, 1]
    assert results["settings"]["label_source"] == "teacher"  # the ablation's own default
    assert (results["settings"]["stage1_steps"], results["settings"]["steps"]) == (6, 12)
    assert results["settings"]["variants"] == VARIANTS
    for rate, table in tables.items():
        assert [row.variant for row in table.rows] == VARIANTS
        for row in table.rows:
            assert sorted(row.accuracy) == [0, 1]
            assert all(0.0 <= value <= 1.0 for value in row.accuracy.values())
            # Each run left its bundle, so an interrupted ablation resumes from there.
            for seed in (0, 1):
                assert (out / f"error-{rate:g}" / row.variant / f"seed-{seed}").is_dir()
        # Only the self-evaluating student can be asked for a verdict.
        assert table.row("ours").verdict_accuracy
        assert not table.row("standard").verdict_accuracy
        saved = results["tables"][str(rate)]
        assert [row["variant"] for row in saved["rows"]] == VARIANTS
    table_md = (out / "table.md").read_text()
    assert table_md.strip() == table_markdown(tables[settings.demo.error_rate])
    assert "Mind's Mirror" in table_md
    assert "N CoTs + drop judged-wrong" in table_md
    assert "N CoTs, weighted majority + agreement filter" in table_md
    assert "±" in table_md
    assert (out / "accuracy_vs_error_rate.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.slow
def test_a_rerun_reuses_the_trained_runs(ablation, capsys) -> None:
    settings, tables = ablation
    weights = sorted(
        (settings.demo.work_dir / "ablation").glob("error-*/*/seed-*/model.safetensors")
    )
    assert len(weights) == 2 * len(VARIANTS) * 2
    written = [path.stat().st_mtime_ns for path in weights]
    again = run_ablation(settings)
    assert [path.stat().st_mtime_ns for path in weights] == written  # nothing retrained
    for rate, table in tables.items():
        for row in table.rows:
            assert again[rate].row(row.variant).accuracy == row.accuracy
    assert "Mind's Mirror" in capsys.readouterr().out


def test_the_table_and_the_plot_take_every_row(tmp_path) -> None:
    # Hand-made tables (no training): every variant of the experiment, one with no result yet.
    from mindmirror.training.student.experiment import VARIANTS as ALL
    from mindmirror.training.student.experiment import ExperimentRow, ExperimentTable

    def table(offset: float) -> ExperimentTable:
        rows = [
            ExperimentRow(name, variant.description, {0: 0.3 + offset, 1: 0.31})
            for name, variant in ALL.items()
        ]
        rows.append(ExperimentRow("later", "not run yet"))
        return ExperimentTable("arith", "d", "t", [0, 1], rows, num_cots=2)

    tables = {0.1: table(0.1), 0.25: table(0.0)}
    markdown = table_markdown(tables[0.25]).splitlines()
    assert len(markdown) == 2 + len(ALL) + 1
    assert "| N CoTs, majority labels | 30.5 ± 0.7 | 30.0 31.0 | - |" in markdown
    assert markdown[-1] == "| not run yet | - |  | - |"
    path = plot_accuracy(tables, tmp_path / "plot.png", "every row")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
