import json
from pathlib import Path

import pytest
from mindmirror.training.student.distill import DistillConfig
from mindmirror.training.student.experiment import DEFAULT_VARIANTS, VARIANTS, run_experiment

from mindmirror.cli import main
from tests.training.student.helpers import small_config


def test_variants_are_the_paper_baselines(train_data: Path, tmp_path: Path) -> None:
    base = small_config(tmp_path, train_data, num_cots=None)
    assert VARIANTS["standard"].overrides(base) == {
        "num_cots": 1,
        "self_evaluation": False,
        "rationale_weight": 0.0,
    }
    alpha_base = base.model_copy(update={"alpha": 0.5})
    assert VARIANTS["standard"].overrides(alpha_base)["alpha"] == 1.0
    assert VARIANTS["cot-1"].overrides(base) == {"num_cots": 1, "self_evaluation": False}
    assert VARIANTS["cot-N"].overrides(base) == {"num_cots": None, "self_evaluation": False}
    assert VARIANTS["ours"].overrides(base) == {"num_cots": None, "self_evaluation": True}


def test_cleaning_variants_set_their_rules_and_nothing_else(train_data: Path, tmp_path) -> None:
    base = small_config(tmp_path, train_data, num_cots=None)
    n_cots = {"num_cots": None, "self_evaluation": False}
    assert VARIANTS["cot-N-majority"].overrides(base) == {**n_cots, "label_source": "majority"}
    assert VARIANTS["cot-N-weighted"].overrides(base) == {
        **n_cots,
        "label_source": "weighted-majority",
    }
    assert VARIANTS["cot-N-drop"].overrides(base) == {**n_cots, "drop_judged_wrong": True}
    assert VARIANTS["cot-N-agree"].overrides(base) == {
        **n_cots,
        "label_source": "weighted-majority",
        "drop_disagreeing": True,
    }
    # every row's settings are a valid run of the base (the experiment builds them validated)
    for variant in VARIANTS.values():
        DistillConfig(**{**dict(base), **variant.overrides(base)})
    assert set(DEFAULT_VARIANTS) <= set(VARIANTS)
    assert DEFAULT_VARIANTS[:4] == ("standard", "cot-1", "cot-N", "ours")  # the paper's rows


@pytest.mark.slow
def test_experiment_table(train_data: Path, test_data: Path, tmp_path: Path, capsys) -> None:
    # Two variants x two seeds, a few steps each, no validation: exercises the runner, the
    # shared tokenizer, the table and the rerun that reuses finished runs.
    base = small_config(tmp_path, train_data, max_steps=3, val_fraction=0.0)
    table = run_experiment(
        base, test_data, output=tmp_path / "exp", seeds=[0, 1], variants=["standard", "ours"]
    )
    standard, ours = table.rows
    assert (standard.variant, ours.variant) == ("standard", "ours")
    assert sorted(standard.accuracy) == sorted(ours.accuracy) == [0, 1]
    assert not standard.verdict_accuracy  # no stage 1, no verdicts
    assert sorted(ours.verdict_accuracy) == [0, 1]
    assert table.num_cots == 2
    for row in table.rows:
        values = list(row.accuracy.values())
        assert row.mean == pytest.approx(sum(values) / 2)
        assert row.std == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert saved == json.loads(json.dumps(table.to_dict()))
    assert (tmp_path / "exp" / "standard" / "seed-1" / "mindmirror.json").is_file()
    assert (tmp_path / "exp" / "tokenizer" / "tokenizer.json").is_file()

    # The CLI over the same folder reuses every finished run (no training) and prints the table.
    code = main(
        [
            "experiment", "--data", str(train_data), "--task", "arith", "--test", str(test_data),
            "--student", "scratch:micro", "--max-steps", "3", "--val-fraction", "0",
            "--seeds", "0,1", "--variants", "standard,ours", "--output", str(tmp_path / "exp"),
            "--no-progress", "--max-input-length", "160", "--max-label-length", "10",
            "--max-rationale-length", "40", "--batch-size", "8", "--vocab-size", "400",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "standard distillation" in out
    assert "±" in out
    assert json.loads((tmp_path / "exp" / "results.json").read_text()) == saved
