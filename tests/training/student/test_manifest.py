"""The manifest a run writes: what was trained on what, from the run's data and stages."""

from pathlib import Path

from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks import get_task
from mindmirror.training.student.data import prepare_data
from mindmirror.training.student.manifest import build_manifest
from mindmirror.training.student.model import resolve_student
from mindmirror.training.student.stage import StageResult

from tests.training.student.helpers import small_config

ARITH = get_task("arith")


def test_manifest_records_the_run(train_data: Path, tmp_path: Path) -> None:
    config = small_config(tmp_path, train_data, num_cots=5, val_fraction=0.0, alpha=0.3)
    data = prepare_data(config, ARITH)
    stages = [
        StageResult("self_evaluation", 200, 16, None, None, 9.0, 2.0),
        StageResult("cot", 120, 16, None, None, 8.0, 3.0),
    ]
    validation = {"after_stage1": 0.9, "final": 0.8, "pairs": 12}
    manifest = build_manifest(
        config, ARITH, resolve_student(config.student), data, stages, 3e-3, validation
    )
    assert (manifest.task, manifest.label_space, manifest.prefixes) == (
        "arith",
        None,
        DEFAULT_PREFIXES,
    )
    assert manifest.self_evaluation is True
    assert manifest.generation.max_new_tokens_predict == config.max_label_length
    assert manifest.generation.max_new_tokens_explain == config.max_rationale_length
    provenance = manifest.provenance
    assert provenance.num_cots == 2  # asked for 5, the data has 2
    assert provenance.num_self_evaluations == 2
    assert (provenance.loss_form, provenance.alpha, provenance.rationale_weight) == (
        "alpha",
        0.3,
        None,
    )
    assert provenance.data_fingerprint == data.fingerprint
    assert provenance.training_steps == {"self_evaluation": 16, "cot": 16}
    assert provenance.replay_pairs == len(data.replay)
    assert provenance.selection == "last checkpoint (no validation split)"
    assert provenance.self_evaluation_validation == validation
    assert provenance.learning_rate == 3e-3
    assert provenance.world_size == 1
    assert provenance.teacher.startswith("simulated-arith")


def test_manifest_records_the_cleaning_rules_and_what_they_left_out(
    train_data: Path, tmp_path: Path
) -> None:
    config = small_config(
        tmp_path,
        train_data,
        val_fraction=0.0,
        label_source="weighted-majority",
        drop_judged_wrong=True,
        drop_disagreeing=True,
    )
    data = prepare_data(config, ARITH)
    stages = [StageResult("cot", 12, 16, None, None, 8.0, 3.0)]
    manifest = build_manifest(
        config, ARITH, resolve_student(config.student), data, stages, 1e-3, None
    )
    provenance = manifest.provenance
    assert provenance.label_source == "weighted-majority"
    assert (provenance.drop_judged_wrong, provenance.drop_disagreeing) == (True, True)
    assert provenance.skipped["cot"] == dict(data.build["cot"].skipped)
    assert provenance.skipped["cot"]["CoTs judged wrong by the teacher's self-evaluations"] > 0
    assert provenance.questions_without_pairs["cot"] == data.build["cot"].questions_without_pairs
    # the bundle's manifest model takes the new label sources back (a bundle reloads)
    assert type(manifest).model_validate(manifest.model_dump(mode="json")) == manifest
