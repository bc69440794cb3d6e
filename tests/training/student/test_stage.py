"""One stage's bookkeeping: checkpoints to resume from, finished stages, step counts."""

import json
from pathlib import Path

import pytest
from mindmirror.training.student.model import resolve_student
from mindmirror.training.student.stage import (
    STAGE_DIRS,
    STAGE_RECORD,
    StageResult,
    StageRun,
    last_complete_checkpoint,
    steps_per_stage,
)

from tests.training.student.helpers import small_config


def _checkpoint(stage_dir: Path, step: int, *, complete: bool) -> Path:
    path = stage_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_resumes_from_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    assert last_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 8, complete=True)
    newest = _checkpoint(tmp_path, 16, complete=True)
    _checkpoint(tmp_path, 24, complete=False)  # cut short by a crash
    (tmp_path / "checkpoint-last").mkdir()
    assert last_complete_checkpoint(tmp_path) == newest


def test_a_finished_stage_is_not_retrained(tmp_path: Path) -> None:
    config = small_config(tmp_path, tmp_path / "unused.jsonl")
    run = StageRun(config, resolve_student(config.student), None, tmp_path / "work", 1e-3)
    finished = StageResult("cot", 10, 16, 0.5, "accuracy", 3.0, 1.0, {"accuracy": 0.5})
    final = tmp_path / "work" / STAGE_DIRS["cot"] / "final"
    final.mkdir(parents=True)
    (final / STAGE_RECORD).write_text(json.dumps(finished.to_json()))

    def never(*args, **kwargs):
        raise AssertionError("a finished stage builds no model")

    result, model = run.train("cot", [], [], never, init=never)
    assert model is None
    assert result.skipped
    assert result.to_json() == finished.to_json()


def test_steps_per_stage_from_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config(tmp_path, tmp_path / "unused.jsonl", max_steps=None, batch_size=16)
    assert steps_per_stage(config, "cot", 100) == 3 * 7  # 7 batches of 16 per epoch, 3 epochs
    accumulating = config.model_copy(update={"gradient_accumulation": 2})
    assert steps_per_stage(accumulating, "cot", 100) == 3 * 4
    monkeypatch.setenv("WORLD_SIZE", "2")  # each of 2 processes sees half of the pairs
    assert steps_per_stage(config, "cot", 100) == 3 * 4
    limited = config.model_copy(update={"max_steps": 5, "self_evaluation_max_steps": 2})
    assert steps_per_stage(limited, "cot", 100) == 5
    assert steps_per_stage(limited, "self_evaluation", 100) == 2
