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
