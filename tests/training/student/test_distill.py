"""Both stages end to end on a small synthetic task, with a micro T5 from scratch on the CPU."""

import shutil
from pathlib import Path

import pytest
import torch
from mindmirror.student.bundle import BundleError, load_manifest
from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.training.student.bundle_io import load_student
from mindmirror.training.student.distill import distill
from mindmirror.training.student.workdir import RunMismatchError
from transformers import TrainerCallback

from tests.training.student.helpers import STEPS, small_config


def test_both_stages_drive_the_loss_down(trained) -> None:
    names = [stage.name for stage in trained.stages]
    assert names == ["self_evaluation", "cot"]
    for stage in trained.stages:
        assert stage.steps == STEPS
        assert stage.last_loss < 0.5 * stage.first_loss, stage
        assert 0.0 <= stage.best_metric <= 1.0
    assert trained.build["cot"].skipped  # the simulated teacher's unparseable CoTs were counted


def test_bundle_verifies_reloads_and_generates(trained) -> None:
    manifest = load_manifest(trained.bundle)  # verifies every checksum
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest.files)
    assert not list(Path(trained.bundle).rglob("*.bin"))
    assert not list(Path(trained.bundle).rglob("*.pt*"))
    assert manifest.self_evaluation is True
    provenance = manifest.provenance
    assert provenance.training_steps == {"self_evaluation": STEPS, "cot": STEPS}
    assert (provenance.num_cots, provenance.num_self_evaluations) == (2, 2)
    assert (provenance.rationale_weight, provenance.loss_form) == (0.5, "lambda")
    assert provenance.label_source == "teacher"
    assert provenance.seed == 0
    assert provenance.data_fingerprint
    assert provenance.mindmirror_version
    validation = provenance.self_evaluation_validation
    assert set(validation) == {"after_stage1", "final", "pairs"}
    # The verdict scores were calibrated on held-out reasonings of known truth (the simulated
    # teacher's data carries gold labels).
    calibration = manifest.verdict_calibration
    assert calibration is not None
    assert calibration.fitted_on == "gold labels"
    assert sum(calibration.examples) > 0
    assert 0.0 <= calibration.threshold <= 1.0
    assert not Path(str(trained.bundle) + ".work").exists()  # checkpoints cleaned up

    model, tokenizer, _ = load_student(trained.bundle)
    question = "Tom has 20 apples. Tom finds 4 more apples.\nHow many apples does Tom have now?"
    ids = tokenizer(DEFAULT_PREFIXES.cot_input(question, "predict"), return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=manifest.generation.max_new_tokens_predict)
    assert tokenizer.decode(out[0], skip_special_tokens=True).strip()


def test_corrupted_bundle_is_refused(trained, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(trained.bundle, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"checksum mismatch for model\.safetensors"):
        load_student(copy)


class InterruptInStage2(TrainerCallback):
    """Simulates Ctrl-C right after stage 2's first checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        if "stage2" in args.output_dir:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_where_it_stopped(trained, train_data: Path, tmp_path) -> None:
    config = small_config(tmp_path, train_data)
    with pytest.raises(KeyboardInterrupt):
        distill(config, callbacks=[InterruptInStage2()])
    work = config.resolved_work_dir
    assert (work / "stage1-self-evaluation" / "final" / "stage.json").is_file()
    assert [p.name for p in (work / "stage2-cot").glob("checkpoint-*")] == ["checkpoint-8"]
    assert not config.output.exists()  # no half-made bundle

    with pytest.raises(RunMismatchError, match="learning_rate: 0.003 then, 0.001 now"):
        distill(small_config(tmp_path, train_data, learning_rate=1e-3))

    resumed = distill(config)
    stage1, stage2 = resumed.stages
    assert stage1.skipped  # the finished stage is not retrained
    assert stage2.resumed_from == 8
    assert stage2.steps == STEPS
    # Optimizer, schedule, RNG and data order were restored: the result is the uninterrupted
    # run's.
    ours, _, _ = load_student(resumed.bundle)
    reference, _, _ = load_student(trained.bundle)
    for (name, a), (_, b) in zip(
        ours.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name


def test_stage1_can_have_its_own_step_count(train_data: Path, tmp_path: Path) -> None:
    config = small_config(
        tmp_path, train_data, max_steps=4, self_evaluation_max_steps=2, val_fraction=0.0
    )
    result = distill(config)
    assert [(stage.name, stage.steps) for stage in result.stages] == [
        ("self_evaluation", 2),
        ("cot", 4),
    ]
    assert result.manifest.provenance.training_steps == {"self_evaluation": 2, "cot": 4}
