"""A run's data: both stages' pairs, the held-out pairs and the replay, before any training."""

from pathlib import Path

import pytest
from mindmirror.student.distillation import write_distillation_set
from mindmirror.student.tasks import get_task
from mindmirror.training.student.data import prepare_data
from mindmirror.training.student.examples import NoUsableDataError

from tests.training.student.conftest import arith_distillation_set
from tests.training.student.helpers import small_config

ARITH = get_task("arith")


def test_pairs_held_out_questions_and_replay(train_data: Path, tmp_path: Path) -> None:
    config = small_config(tmp_path, train_data)
    data = prepare_data(config, ARITH)
    assert len(data.records) == 60
    assert (len(data.train_records), len(data.val_records)) == (51, 9)
    held_out = {record.id for record in data.val_records}
    for pair in data.build["cot"].pairs + data.build["self_evaluation"].pairs:
        assert pair.record_id not in held_out
    assert {pair.record_id for pair in data.val_cot} <= held_out
    assert {pair.record_id for pair in data.val_self_evaluation} <= held_out
    pool = data.build["self_evaluation"].pairs
    assert len(data.replay) == round(config.replay_fraction * len(pool))
    assert set(data.replay) <= set(pool)
    stage2 = data.stage2_pairs(config.seed)
    assert sorted(stage2, key=repr) == sorted(data.build["cot"].pairs + data.replay, key=repr)
    assert stage2 == data.stage2_pairs(config.seed)  # seeded
    assert stage2 != data.build["cot"].pairs + data.replay  # shuffled, the pools untouched
    assert prepare_data(config, ARITH).fingerprint == data.fingerprint


def test_without_stage_1_nothing_is_replayed(train_data: Path, tmp_path: Path) -> None:
    data = prepare_data(small_config(tmp_path, train_data, self_evaluation=False), ARITH)
    assert set(data.build) == {"cot"}
    assert (data.replay, data.val_self_evaluation) == ([], [])


def test_human_labels_missing_is_explained(tmp_path: Path) -> None:
    records = [r.model_copy(update={"label": None}) for r in arith_distillation_set("train")]
    data = tmp_path / "unlabelled.jsonl"
    write_distillation_set(data, records)
    with pytest.raises(NoUsableDataError, match="no human labels, use --label-source teacher"):
        prepare_data(small_config(tmp_path, data, label_source="human"), ARITH)


JUDGED_WRONG = "CoTs judged wrong by the teacher's self-evaluations"


def test_cleaning_options_reach_the_pairs_and_leave_stage_1_alone(
    train_data: Path, tmp_path: Path
) -> None:
    paper = prepare_data(small_config(tmp_path, train_data), ARITH)
    cleaned = prepare_data(
        small_config(
            tmp_path,
            train_data,
            label_source="weighted-majority",
            drop_judged_wrong=True,
            drop_disagreeing=True,
        ),
        ARITH,
    )
    skipped = cleaned.build["cot"].skipped
    assert skipped[JUDGED_WRONG] > 0
    assert skipped["CoTs whose answer disagrees with the label"] > 0
    assert len(cleaned.build["cot"].pairs) < len(paper.build["cot"].pairs)
    assert cleaned.build["self_evaluation"].pairs == paper.build["self_evaluation"].pairs
    assert cleaned.replay == paper.replay
    # the held-out questions have human labels, so their gold is the same either way
    assert [p.label for p in cleaned.val_cot] == [p.label for p in paper.val_cot]


def test_unlabelled_held_out_questions_take_the_vote_of_the_label_source(tmp_path: Path) -> None:
    from mindmirror.training.student.cleaning import majority_label

    records = [r.model_copy(update={"label": None}) for r in arith_distillation_set("train")]
    data = tmp_path / "unlabelled.jsonl"
    write_distillation_set(data, records)
    config = small_config(tmp_path, data, label_source="weighted-majority")
    prepared = prepare_data(config, ARITH)
    expected = {r.id: majority_label(ARITH, r, weighted=True) for r in prepared.val_records}
    assert {p.record_id: p.label for p in prepared.val_cot} == expected
    plain = {r.id: majority_label(ARITH, r) for r in prepared.val_records}
    assert expected != plain  # the weighting changed some held-out labels


@pytest.mark.parametrize(
    "options",
    [{"drop_judged_wrong": True}, {"label_source": "weighted-majority"}],
)
def test_rules_that_read_verdicts_refuse_data_without_any(tmp_path: Path, options) -> None:
    records = arith_distillation_set("train", n_evals=0)
    data = tmp_path / "no-verdicts.jsonl"
    write_distillation_set(data, records)
    config = small_config(tmp_path, data, self_evaluation=False, **options)
    with pytest.raises(NoUsableDataError, match="read the teacher's self-evaluation verdicts"):
        prepare_data(config, ARITH)
