"""``mindmirror distill``: train a student in two stages and write its bundle.

Stage 1 teaches self-evaluation (verdict + evaluation rationale), stage 2 chain-of-thought
reasoning (label + rationale), continuing from the stage-1 weights. Both stages run the HF
Trainer (:class:`~mindmirror.training.student.trainer.MultiTaskTrainer`), so ``torchrun`` or
``accelerate launch`` give DDP with no code of ours.

Resuming. Everything a run writes before the bundle lives in a work directory (default:
``<output>.work``): ``run.json`` (the settings that shape training), ``tokenizer/`` (scratch
students), and per stage ``checkpoint-<step>/`` folders and, once the stage is finished,
``final/``. Rerunning the same command skips finished stages and resumes the stage in
progress from its last complete checkpoint. A rerun with different training settings is
refused rather than mixed into the old run. The work directory is removed once the bundle is
written (``--keep-work-dir`` keeps it).

Forgetting. The service's ``/v1/evaluate`` uses the *final* student, so stage 2 must not
erase stage 1. ``replay_fraction`` mixes that fraction of the stage-1 pairs into stage 2; the
verdict accuracy on held-out self-evaluations is measured after stage 1 and again on the final
model and recorded in the manifest (``provenance.self_evaluation_validation``).

Calibration. The final student's verdict scores are calibrated on the held-out examples'
teacher chains of thought, right or wrong by their human labels (else by the teacher's
majority verdict): slope, intercept and decision threshold go into the manifest
(``verdict_calibration``), which the service reads (:mod:`mindmirror.student.verdict_scores`).

:func:`distill` is that sequence; each step has its module: the data and the replay
(:mod:`~mindmirror.training.student.data`), the run record and the tokenizer
(:mod:`~mindmirror.training.student.workdir`), one stage's training
(:mod:`~mindmirror.training.student.stage`), the held-out verdict agreement and calibration
(:mod:`~mindmirror.training.student.verdicts`) and the manifest
(:mod:`~mindmirror.training.student.manifest`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mindmirror.student.bundle import LabelSource, Manifest
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks import Task, get_task
from mindmirror.student.verdict_scores import VerdictCalibration
from mindmirror.training.student.data import DistillData, prepare_data
from mindmirror.training.student.examples import BuildResult, cot_judge
from mindmirror.training.student.manifest import build_manifest
from mindmirror.training.student.model import (
    SCRATCH_CONFIGS,
    StudentSource,
    check_student,
    resolve_student,
)
from mindmirror.training.student.stage import StageResult, StageRun
from mindmirror.training.student.verdicts import (
    measure_verdicts,
    score_cases,
    truth_cases,
    verdict_judge,
)
from mindmirror.training.student.workdir import check_run_record, prepare_tokenizer
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration, TrainerCallback

__all__ = [
    "DEFAULT_REPLAY_FRACTION",
    "PRETRAINED_LEARNING_RATE",
    "SCRATCH_LEARNING_RATE",
    "DistillConfig",
    "DistillResult",
    "distill",
]

logger = logging.getLogger(__name__)

#: Fraction of the stage-1 pairs replayed during stage 2. Set from the measurement in
#: docs/training.md ("Keeping self-evaluation through stage 2").
DEFAULT_REPLAY_FRACTION = 0.25
#: The learning rate when none is given: the paper's for a pretrained T5; a random-init student
#: needs a larger one.
PRETRAINED_LEARNING_RATE = 5e-5
SCRATCH_LEARNING_RATE = 1e-3

#: Stage 2's data-cleaning switches (training/student/cleaning.py), recorded only when on.
_CLEANING_RULES = ("drop_judged_wrong", "drop_disagreeing")
#: Settings that do not change what is trained: they may differ between a run and its resume.
_NOT_TRAINING_SETTINGS = frozenset(
    {"output", "work_dir", "keep_work_dir", "force", "progress", "eval_batch_size", "data"}
)


class DistillConfig(BaseModel):
    """Every option of a distillation run (the CLI flags map one to one; each description is
    the flag's help, each default the flag's default)."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(
        description="distillation set JSONL, or a distilling-step-by-step / Mind's Mirror folder"
    )
    task: str = Field(description="task name or the path of a YAML/JSON task spec")
    output: Path = Field(description="bundle directory to write")
    split: str = Field("train", description="split to read from a release folder")
    # --- student ---
    student: str = Field(
        "scratch:tiny",
        description="hub name (google/t5-v1_1-base), local directory or HF cache entry of a T5, "
        f"or scratch:{'|'.join(SCRATCH_CONFIGS)} for a random-init T5 with a tokenizer trained "
        "on the data",
    )
    student_revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    tokenizer: Path | None = Field(None, description="scratch students: reuse this saved tokenizer")
    vocab_size: int = Field(4000, ge=64, description="scratch tokenizer size")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="override the model's dropout rate"
    )
    # --- what is distilled ---
    num_cots: int | None = Field(None, ge=1, description="CoTs used per question (default: all N)")
    self_evaluation: bool = Field(
        True, description="train stage 1 (self-evaluation) before stage 2"
    )
    num_self_evaluations: int | None = Field(
        None, ge=1, description="self-evaluations used per CoT (default: all M)"
    )
    label_source: LabelSource = Field(
        "teacher",
        description="stage-2 label: teacher = each CoT's own answer (the paper's); majority = "
        "the question's most frequent answer over its N CoTs; weighted-majority = the same "
        "vote, each CoT weighed by its share of 'correct' verdicts; human = the human label",
    )
    drop_judged_wrong: bool = Field(
        False,
        description="stage 2 leaves out CoTs that more of their M self-evaluations judge wrong "
        "than correct (uncertain abstains, ties keep; the paper keeps every CoT)",
    )
    drop_disagreeing: bool = Field(
        False,
        description="stage 2 keeps only CoTs whose own answer is their pair's label (needs "
        "--label-source human, majority or weighted-majority; the paper keeps every CoT)",
    )
    rationale_weight: float = Field(0.5, ge=0.0, description="λ in L = CE(label) + λ·CE(rationale)")
    alpha: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="use the authors' code form L = α·CE(label) + (1-α)·CE(rationale) instead",
    )
    replay_fraction: float = Field(
        DEFAULT_REPLAY_FRACTION,
        ge=0.0,
        le=1.0,
        description="fraction of the stage-1 pairs mixed into stage 2 so the final student "
        "keeps its self-evaluation (measured in docs/training.md)",
    )
    # --- optimisation (per stage) ---
    seed: int = Field(0, description="initialisation, data order and validation split")
    epochs: float = Field(3.0, gt=0, description="epochs per stage")
    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps per stage (overrides --epochs)"
    )
    #: stage 1's pairs carry a whole chain of thought in the input, so its steps cost more, and
    #: it may need fewer of them
    self_evaluation_max_steps: int | None = Field(
        None,
        ge=1,
        description="optimizer steps of stage 1 (self-evaluation) when it should differ from "
        "--max-steps",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        description=f"learning rate (default: {PRETRAINED_LEARNING_RATE:g} pretrained, "
        f"{SCRATCH_LEARNING_RATE:g} from scratch)",
    )
    batch_size: int = Field(16, ge=1, description="pairs per device and step")
    eval_batch_size: int = Field(
        64, ge=1, description="inputs per batch when generating for validation"
    )
    gradient_accumulation: int = Field(1, ge=1, description="batches per optimizer step")
    warmup_ratio: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the steps with a linear warm-up"
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    max_input_length: int = Field(512, ge=8, description="input tokens (longer inputs are cut)")
    max_label_length: int = Field(32, ge=2, description="label tokens (longer labels are cut)")
    max_rationale_length: int = Field(
        256, ge=2, description="rationale tokens (longer rationales are cut)"
    )
    bf16: bool | None = Field(
        None, description="bfloat16 mixed precision (default: on when a CUDA GPU supports it)"
    )
    cpu: bool = Field(False, description="train on the CPU even with a GPU")
    # --- model selection ---
    val_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="share of training examples held out for model selection (0: keep the "
        "last weights)",
    )
    select_by: Literal["accuracy", "loss"] = Field(
        "accuracy", description="validation metric for picking the checkpoint"
    )
    evaluations_per_stage: int = Field(
        5, ge=1, description="validations (and checkpoints) per stage"
    )
    # --- files ---
    work_dir: Path | None = Field(
        None, description="checkpoints and resume state (default: OUTPUT.work)"
    )
    keep_work_dir: bool = Field(False, description="keep checkpoints after the bundle is written")
    force: bool = Field(False, description="replace an existing bundle")
    progress: bool = Field(True, description="show progress bars")

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if self.tokenizer is not None and not self.student.startswith("scratch:"):
            raise ValueError("--tokenizer applies to scratch:<size> students only")
        if self.drop_disagreeing and self.label_source == "teacher":
            raise ValueError(
                "--drop-disagreeing needs --label-source human, majority or weighted-majority "
                "(a teacher label is its own CoT's answer: every CoT agrees with it)"
            )
        return self

    @property
    def loss_weight(self) -> tuple[float, Literal["lambda", "alpha"]]:
        if self.alpha is not None:
            return self.alpha, "alpha"
        return self.rationale_weight, "lambda"

    def stage_max_steps(self, stage: str) -> int | None:
        """The step limit of one stage (``"self_evaluation"`` or ``"cot"``); None: epochs."""
        if stage == "self_evaluation" and self.self_evaluation_max_steps is not None:
            return self.self_evaluation_max_steps
        return self.max_steps

    def resolved_learning_rate(self, source: StudentSource) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return SCRATCH_LEARNING_RATE if source.scratch else PRETRAINED_LEARNING_RATE

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.output.with_name(self.output.name + ".work")

    def training_settings(self) -> dict[str, Any]:
        """What shapes training, as the run record keeps it. The cleaning rules appear only when
        on, so a run with the paper's data (and the demo's stage keys) reads as it did before
        they existed, and a run record without them means they were off."""
        settings = self.model_dump(mode="json", exclude=set(_NOT_TRAINING_SETTINGS))
        for name in _CLEANING_RULES:
            if not settings[name]:
                del settings[name]
        return settings


@dataclass
class DistillResult:
    bundle: Path | None  # None on the non-main processes of a DDP run
    manifest: Manifest | None
    stages: list[StageResult]
    build: dict[str, BuildResult]
    data_examples: int
    train_examples: int
    val_examples: int


# ----- the run ----------------------------------------------------------------------------
def distill(config: DistillConfig, callbacks: Sequence[TrainerCallback] = ()) -> DistillResult:
    """Run (or resume) both stages and write the bundle at ``config.output``."""
    from accelerate import PartialState
    from mindmirror.training.student.bundle_io import save_bundle

    task = get_task(config.task)
    source = resolve_student(config.student)
    if config.output.exists() and not config.force:
        raise MindmirrorError(f"{config.output} already exists; pass --force to replace it")
    if not source.scratch:
        check_student(source, config.student_revision)

    data = prepare_data(config, task)
    work = config.resolved_work_dir
    state = PartialState(cpu=config.cpu)
    with state.main_process_first():
        check_run_record(work, config.training_settings(), data.fingerprint)
    tokenizer = prepare_tokenizer(config, source, data.train_records, task, work)
    run = StageRun(
        config, source, tokenizer, work, config.resolved_learning_rate(source), callbacks
    )

    stages: list[StageResult] = []
    model = None
    if config.self_evaluation:
        result, model = run.train(
            "self_evaluation",
            data.build["self_evaluation"].pairs,
            data.val_self_evaluation,
            verdict_judge,
            init=run.initial_model,
        )
        stages.append(result)
    result, model = run.train(
        "cot",
        data.stage2_pairs(config.seed),
        data.val_cot,
        cot_judge(task),
        init=(lambda: run.final_model("self_evaluation"))
        if config.self_evaluation
        else run.initial_model,
    )
    stages.append(result)
    counts = (len(data.records), len(data.train_records), len(data.val_records))
    if not state.is_main_process:
        return DistillResult(None, None, stages, data.build, *counts)

    if model is None:  # stage 2 finished in an earlier run
        model = run.final_model("cot")
    validation = _verdict_validation(config, model, tokenizer, data, stages)
    calibration = _calibrate_verdicts(config, model, tokenizer, data, task)
    manifest = build_manifest(
        config, task, source, data, stages, run.learning_rate, validation, calibration
    )
    written = save_bundle(model.to("cpu"), tokenizer, manifest, config.output, force=config.force)
    logger.info("wrote the student bundle %s", config.output)
    if not config.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return DistillResult(config.output, written, stages, data.build, *counts)


def _calibrate_verdicts(
    config: DistillConfig,
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    data: DistillData,
    task: Task,
) -> VerdictCalibration | None:
    """Fit the bundle's verdict calibration on the held-out examples' teacher chains of thought,
    judged right or wrong against their human labels (else the teacher's majority verdict):
    see :mod:`mindmirror.student.verdict_scores`. ``None`` without stage 1 or held-out data."""
    if not (config.self_evaluation and data.val_records):
        return None
    cases, source = truth_cases(data.val_records, task, DEFAULT_PREFIXES, config.num_cots)
    if not cases:
        return None
    report = score_cases(
        model,
        tokenizer,
        cases,
        source,
        None,
        max_input_length=config.max_input_length,
        batch_size=config.eval_batch_size,
        progress=config.progress,
        desc="calibrating verdicts",
    )
    calibration = report.calibrate()
    logger.info(
        "verdict calibration on %d held-out reasonings (%d right; truth from %s): AUROC %s, "
        "balanced accuracy %s at threshold %.3f",
        len(report.truths),
        report.right,
        source,
        _maybe(calibration.auroc),
        _maybe(calibration.balanced_accuracy),
        calibration.threshold,
    )
    return calibration


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _verdict_validation(
    config: DistillConfig,
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    data: DistillData,
    stages: list[StageResult],
) -> dict[str, float | None] | None:
    """The held-out verdict agreement after stage 1 and of the final student: whether stage 2
    kept what stage 1 taught (``None`` without stage 1 or held-out self-evaluations)."""
    import torch

    if not (config.self_evaluation and data.val_self_evaluation):
        return None
    model.to("cuda" if torch.cuda.is_available() and not config.cpu else "cpu")
    final = measure_verdicts(
        model,
        tokenizer,
        [(pair.predict_input, pair.label) for pair in data.val_self_evaluation],
        max_new_tokens=config.max_label_length,
        max_input_length=config.max_input_length,
        batch_size=config.eval_batch_size,
        progress=config.progress,
    )
    validation = {
        "after_stage1": stages[0].validation.get("accuracy"),
        "final": final.accuracy,
        "pairs": len(data.val_self_evaluation),
    }
    logger.info(
        "held-out verdict accuracy: %s after stage 1, %.3f final",
        validation["after_stage1"],
        validation["final"],
    )
    return validation
