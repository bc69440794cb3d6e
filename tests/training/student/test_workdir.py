"""The run record and the tokenizer a run keeps in its work directory."""

import json
from pathlib import Path

import pytest
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import get_task
from mindmirror.training.student import tokenizer as tokenizer_module
from mindmirror.training.student.data import prepare_data
from mindmirror.training.student.model import resolve_student
from mindmirror.training.student.workdir import (
    RUN_RECORD,
    RunMismatchError,
    check_run_record,
    prepare_tokenizer,
)

from tests.training.student.helpers import small_config


def test_run_record_is_written_once_and_guards_the_resume(tmp_path: Path) -> None:
    work = tmp_path / "work"
    check_run_record(work, {"seed": 0, "epochs": 3.0}, "abc")
    written = json.loads((work / RUN_RECORD).read_text())
    assert written == {"settings": {"seed": 0, "epochs": 3.0}, "data_fingerprint": "abc"}
    check_run_record(work, {"seed": 0, "epochs": 3.0}, "abc")  # the same run: resumed
    with pytest.raises(RunMismatchError, match="seed: 0 then, 1 now") as error:
        check_run_record(work, {"seed": 1, "epochs": 3.0}, "abc")
    assert "--work-dir" in str(error.value)
    with pytest.raises(RunMismatchError, match="the training data changed"):
        check_run_record(work, {"seed": 0, "epochs": 3.0}, "def")


def test_scratch_tokenizer_is_trained_once_and_reused(
    train_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config(tmp_path, train_data)
    task = get_task("arith")
    records = prepare_data(config, task).train_records
    source = resolve_student(config.student)
    first = prepare_tokenizer(config, source, records, task, tmp_path / "work")
    assert (tmp_path / "work" / "tokenizer" / "tokenizer.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the saved tokenizer should have been reused")

    monkeypatch.setattr(tokenizer_module, "write_tokenizer", no_training)
    again = prepare_tokenizer(config, source, records, task, tmp_path / "work")
    assert again.get_vocab() == first.get_vocab()

    missing = config.model_copy(update={"tokenizer": tmp_path / "nowhere"})
    with pytest.raises(MindmirrorError, match="tokenizer directory not found"):
        prepare_tokenizer(missing, source, records, task, tmp_path / "work")


def test_the_run_record_holds_the_cleaning_rules_only_when_on(
    train_data: Path, tmp_path: Path
) -> None:
    paper = small_config(tmp_path, train_data)
    # a paper-setting run reads as it did before the rules existed: old work dirs resume
    assert not {"drop_judged_wrong", "drop_disagreeing"} & set(paper.training_settings())
    assert paper.training_settings()["label_source"] == "teacher"
    cleaned = small_config(
        tmp_path, train_data, label_source="majority", drop_judged_wrong=True, drop_disagreeing=True
    )
    settings = cleaned.training_settings()
    assert (settings["drop_judged_wrong"], settings["drop_disagreeing"]) == (True, True)
    work = tmp_path / "work"
    check_run_record(work, paper.training_settings(), "abc")
    with pytest.raises(RunMismatchError, match="drop_judged_wrong: None then, True now"):
        check_run_record(work, cleaned.training_settings(), "abc")
