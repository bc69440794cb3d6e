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
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mindmirror.student.bundle import GenerationDefaults, Manifest, Provenance
from mindmirror.student.distillation import (
    DistillationRecord,
    fingerprint,
    load_distillation_data,
    parse_stats,
)
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_write_text
from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks import Task, get_task
from mindmirror.training.student.examples import (
    BuildResult,
    NoUsableDataError,
    TrainingPair,
    build_cot_pairs,
    build_cot_validation,
    build_self_evaluation_pairs,
    cot_judge,
    split_records,
    verdict_judge,
)
from mindmirror.training.student.model import StudentSource, check_student, resolve_student
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mindmirror import __version__

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration, TrainerCallback

__all__ = [
    "DEFAULT_REPLAY_FRACTION",
    "DistillConfig",
    "DistillResult",
    "RunMismatchError",
    "StageResult",
    "distill",
]

logger = logging.getLogger(__name__)

#: Fraction of the stage-1 pairs replayed during stage 2. Set from the measurement in
#: docs/training.md ("Keeping self-evaluation through stage 2").
DEFAULT_REPLAY_FRACTION = 0.25

STAGE_RECORD = "stage.json"
RUN_RECORD = "run.json"
#: Settings that do not change what is trained: they may differ between a run and its resume.
_NOT_TRAINING_SETTINGS = frozenset(
    {"output", "work_dir", "keep_work_dir", "force", "progress", "eval_batch_size", "data"}
)


class RunMismatchError(MindmirrorError, ValueError):
    """The work directory holds a run made with other settings or other data."""


class DistillConfig(BaseModel):
    """Every option of a distillation run (the CLI flags map one to one)."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    task: str
    output: Path
    split: str = "train"
    # --- student ---
    student: str = "scratch:tiny"
    student_revision: str | None = None
    tokenizer: Path | None = None  # scratch students: reuse this tokenizer instead of training
    vocab_size: int = Field(4000, ge=64)
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    # --- what is distilled ---
    num_cots: int | None = Field(None, ge=1)
    self_evaluation: bool = True
    num_self_evaluations: int | None = Field(None, ge=1)
    label_source: Literal["teacher", "human"] = "teacher"
    rationale_weight: float = Field(0.5, ge=0.0)  # λ
    alpha: float | None = Field(None, ge=0.0, le=1.0)  # the authors' α-form when set
    replay_fraction: float = Field(DEFAULT_REPLAY_FRACTION, ge=0.0, le=1.0)
    # --- optimisation (per stage) ---
    seed: int = 0
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    #: stage 1 only (default: ``max_steps``): its pairs carry a whole chain of thought in the
    #: input, so its steps cost more, and it may need fewer of them
    self_evaluation_max_steps: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)  # None: 5e-5 pretrained, 1e-3 scratch
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_input_length: int = Field(512, ge=8)
    max_label_length: int = Field(32, ge=2)
    max_rationale_length: int = Field(256, ge=2)
    bf16: bool | None = None  # None: on when a CUDA GPU supports it
    cpu: bool = False
    # --- model selection ---
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    select_by: Literal["accuracy", "loss"] = "accuracy"
    evaluations_per_stage: int = Field(5, ge=1)
    # --- files ---
    work_dir: Path | None = None
    keep_work_dir: bool = False
    force: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if self.tokenizer is not None and not self.student.startswith("scratch:"):
            raise ValueError("--tokenizer applies to scratch:<size> students only")
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

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.output.with_name(self.output.name + ".work")

    def training_settings(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(_NOT_TRAINING_SETTINGS))


@dataclass
class StageResult:
    name: str
    pairs: int
    steps: int
    best_metric: float | None
    metric: str | None
    first_loss: float | None
    last_loss: float | None
    validation: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None
    skipped: bool = False  # finished in an earlier run; not retrained

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "skipped"}


@dataclass
class DistillResult:
    bundle: Path | None  # None on the non-main processes of a DDP run
    manifest: Manifest | None
    stages: list[StageResult]
    build: dict[str, BuildResult]
    data_examples: int
    train_examples: int
    val_examples: int


# ----- helpers ----------------------------------------------------------------------------
def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _use_bf16(config: DistillConfig) -> bool:
    import torch

    available = not config.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.bf16 and not available:
        raise MindmirrorError("--bf16 needs a CUDA GPU with bfloat16 support")
    return available if config.bf16 is None else config.bf16


def _steps_per_stage(config: DistillConfig, stage: str, pairs: int) -> int:
    if config.stage_max_steps(stage):
        return config.stage_max_steps(stage)
    batches = math.ceil(math.ceil(pairs / _world_size()) / config.batch_size)
    per_epoch = max(1, math.ceil(batches / config.gradient_accumulation))
    return max(1, math.ceil(config.epochs * per_epoch))


def last_complete_checkpoint(stage_dir: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` whose ``trainer_state.json`` exists (the Trainer writes
    it last, so a checkpoint cut short by a crash is never resumed from)."""
    candidates = []
    for path in stage_dir.glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit():
            candidates.append((int(suffix), path))
    for _, path in sorted(candidates, reverse=True):
        if (path / "trainer_state.json").is_file() and (path / "model.safetensors").is_file():
            return path
        logger.warning("ignoring incomplete checkpoint %s", path)
    return None


def _check_run_record(work: Path, config: DistillConfig, data_fingerprint: str) -> None:
    expected = {"settings": config.training_settings(), "data_fingerprint": data_fingerprint}
    path = work / RUN_RECORD
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != expected:
            differences = [
                f"{key}: {found.get('settings', {}).get(key)!r} then, {value!r} now"
                for key, value in expected["settings"].items()
                if found.get("settings", {}).get(key) != value
            ]
            if found.get("data_fingerprint") != data_fingerprint:
                differences.append("the training data changed")
            raise RunMismatchError(
                f"{work} holds a run with other settings ({'; '.join(differences) or 'unknown'}); "
                "rerun with the same options to resume it, or pass another --work-dir "
                "(or delete that folder) to start over"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(expected, indent=2))


def training_texts(records: Sequence[DistillationRecord], task: Task) -> list[str]:
    from mindmirror.training.student.examples import cot_reasoning_text

    texts: list[str] = []
    prefixes = DEFAULT_PREFIXES
    texts += [prefixes.predict, prefixes.explain, prefixes.evaluate, prefixes.reasoning]
    texts += ["correct", "wrong", "uncertain"]
    for record in records:
        texts.append(record.question)
        if record.label:
            texts.append(record.label)
        example = record.example()
        for cot in record.cots:
            texts.append(cot_reasoning_text(task, cot, example))
            if cot.answer:
                texts.append(cot.answer)
            texts += [evaluation.rationale for evaluation in cot.self_evaluations]
    return texts


def _prepare_tokenizer(
    config: DistillConfig,
    source: StudentSource,
    records: Sequence[DistillationRecord],
    task: Task,
    work: Path,
) -> PreTrainedTokenizerBase:
    from accelerate import PartialState
    from mindmirror.training.student.model import load_pretrained_tokenizer, tokenizer_corpus
    from mindmirror.training.student.tokenizer import train_tokenizer
    from transformers import AutoTokenizer

    if not source.scratch:
        return load_pretrained_tokenizer(source, config.student_revision)
    if config.tokenizer is not None:
        if not config.tokenizer.is_dir():
            raise MindmirrorError(f"tokenizer directory not found: {config.tokenizer}")
        return AutoTokenizer.from_pretrained(config.tokenizer)
    saved = work / "tokenizer"
    # Rank 0 trains and saves it; the other ranks then load the same one.
    with PartialState(cpu=config.cpu).main_process_first():
        if not (saved / "tokenizer.json").is_file():
            logger.info("training a %d-piece tokenizer on the training text", config.vocab_size)
            tokenizer = train_tokenizer(
                tokenizer_corpus(training_texts(records, task)), vocab_size=config.vocab_size
            )
            tmp = work / ".tokenizer.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, saved)
        return AutoTokenizer.from_pretrained(saved)


def _initial_model(
    config: DistillConfig, source: StudentSource, tokenizer: PreTrainedTokenizerBase
) -> T5ForConditionalGeneration:
    import torch
    from mindmirror.training.student.model import load_student_model, scratch_config
    from transformers import T5ForConditionalGeneration

    if source.scratch:
        torch.manual_seed(config.seed)  # the same random init on every rank and every rerun
        return T5ForConditionalGeneration(scratch_config(source.scratch, tokenizer, config.dropout))
    model = load_student_model(source, revision=config.student_revision, dropout=config.dropout)
    if model.config.vocab_size < len(tokenizer):
        raise MindmirrorError(
            f"{config.student}: tokenizer has {len(tokenizer)} tokens but the model only "
            f"{model.config.vocab_size} embeddings"
        )
    return model


def _loss_summary(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return (losses[0], losses[-1]) if losses else (None, None)


def _train_stage(
    name: str,
    *,
    config: DistillConfig,
    train_pairs: list[TrainingPair],
    val_pairs: list[TrainingPair],
    judge: Callable[[str, TrainingPair], tuple[bool, bool]],
    init: Callable[[], T5ForConditionalGeneration],
    tokenizer: PreTrainedTokenizerBase,
    stage_dir: Path,
    learning_rate: float,
    callbacks: Sequence[TrainerCallback],
) -> tuple[StageResult, T5ForConditionalGeneration | None]:
    """Train one stage (or find it finished) and leave its selected weights in ``final/``."""
    import torch
    from accelerate import PartialState
    from mindmirror.training.student.trainer import (
        EvaluateAtEnd,
        MultiTaskTrainer,
        PairCollator,
        PairDataset,
        make_compute_metrics,
        uses_rationale,
    )
    from transformers import Seq2SeqTrainingArguments

    final = stage_dir / "final"
    if (final / STAGE_RECORD).is_file():
        saved = json.loads((final / STAGE_RECORD).read_text(encoding="utf-8"))
        logger.info("stage %s already finished in %s; not retraining", name, final)
        return StageResult(**saved, skipped=True), None

    weight, form = config.loss_weight
    with_rationale = uses_rationale(weight, form)
    lengths = {
        "max_input_length": config.max_input_length,
        "max_label_length": config.max_label_length,
        "max_rationale_length": config.max_rationale_length,
    }
    train_set = PairDataset(train_pairs, tokenizer, with_rationale=with_rationale, **lengths)
    val_set = (
        PairDataset(val_pairs, tokenizer, with_rationale=with_rationale, with_index=True, **lengths)
        if val_pairs
        else None
    )
    for kind, count in train_set.truncated.items():
        if count:
            logger.warning(
                "stage %s: %d of %d training %s were longer than the maximum length and cut; "
                "raise --max-%s-length if that matters",
                name,
                count,
                len(train_set),
                kind,
                {"inputs": "input", "labels": "label", "rationales": "rationale"}[kind],
            )
    total_steps = _steps_per_stage(config, name, len(train_set))
    interval = max(1, math.ceil(total_steps / config.evaluations_per_stage))
    select = val_set is not None
    args = Seq2SeqTrainingArguments(
        output_dir=str(stage_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.stage_max_steps(name) or -1,
        eval_strategy="steps" if select else "no",
        eval_steps=interval,
        save_strategy="steps",
        save_steps=interval,
        save_total_limit=1,
        save_safetensors=True,
        load_best_model_at_end=select,
        metric_for_best_model=config.select_by if select else None,
        greater_is_better=config.select_by == "accuracy" if select else None,
        predict_with_generate=select and config.select_by == "accuracy",
        logging_steps=max(1, min(interval, math.ceil(total_steps / 20))),
        logging_first_step=True,
        bf16=_use_bf16(config),
        use_cpu=config.cpu,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=not config.cpu and torch.cuda.is_available(),
        disable_tqdm=not config.progress,
        ddp_find_unused_parameters=False,
        save_only_model=False,
    )
    model = init()
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=PairCollator(pad_token_id=tokenizer.pad_token_id),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(tokenizer, val_pairs, judge) if select else None,
        callbacks=[EvaluateAtEnd(), *callbacks],
        rationale_weight=weight,
        loss_form=form,
        label_max_new_tokens=config.max_label_length,
    )
    checkpoint = last_complete_checkpoint(stage_dir)
    resumed_from = None
    if checkpoint is not None:
        resumed_from = int(checkpoint.name.split("-", 1)[1])
        logger.info("stage %s: resuming from %s", name, checkpoint)
    logger.info(
        "stage %s: %d pairs, %d steps, %d held-out for selection by %s",
        name,
        len(train_set),
        total_steps,
        len(val_pairs),
        config.select_by if select else "-",
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    best_eval: dict[str, float] = {}
    if select:
        best_step = trainer.state.best_global_step
        for entry in trainer.state.log_history:
            if entry.get("step") == best_step and any(k.startswith("eval_") for k in entry):
                best_eval = {
                    k.removeprefix("eval_"): float(v)
                    for k, v in entry.items()
                    if k.startswith("eval_") and isinstance(v, int | float)
                }
    first_loss, last_loss = _loss_summary(trainer.state.log_history)
    result = StageResult(
        name=name,
        pairs=len(train_set),
        steps=trainer.state.global_step,
        best_metric=trainer.state.best_metric,
        metric=config.select_by if select else None,
        first_loss=first_loss,
        last_loss=last_loss,
        validation=best_eval,
        resumed_from=resumed_from,
    )
    tmp = stage_dir / ".final.tmp"
    state = PartialState()
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    state.wait_for_everyone()
    trainer.save_model(str(tmp))  # the selected (best) weights; only rank 0 writes
    if state.is_main_process:
        (tmp / STAGE_RECORD).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
        os.replace(tmp, final)
        for old in stage_dir.glob("checkpoint-*"):  # the stage is done; free the disk
            shutil.rmtree(old, ignore_errors=True)
    state.wait_for_everyone()
    return result, trainer.model


def _load_final(stage_dir: Path) -> T5ForConditionalGeneration:
    from transformers import T5ForConditionalGeneration

    return T5ForConditionalGeneration.from_pretrained(stage_dir / "final", use_safetensors=True)


def _verdict_accuracy(
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[TrainingPair],
    config: DistillConfig,
) -> float | None:
    """Agreement of the model's verdicts with the teacher's on held-out self-evaluations."""
    from mindmirror.training.student.generation import generate_texts

    if not pairs:
        return None
    inputs = list(dict.fromkeys(pair.predict_input for pair in pairs))  # M evaluations share one
    texts = generate_texts(
        model,
        tokenizer,
        inputs,
        max_new_tokens=config.max_label_length,
        max_input_length=config.max_input_length,
        batch_size=config.eval_batch_size,
        progress=config.progress,
        desc="held-out verdicts",
    )
    answers = dict(zip(inputs, texts, strict=True))
    correct = sum(verdict_judge(answers[pair.predict_input], pair)[1] for pair in pairs)
    return correct / len(pairs)


# ----- the run ----------------------------------------------------------------------------
def distill(config: DistillConfig, callbacks: Sequence[TrainerCallback] = ()) -> DistillResult:
    """Run (or resume) both stages and write the bundle at ``config.output``."""
    import torch
    from mindmirror.training.student.bundle_io import save_bundle

    task = get_task(config.task)
    source = resolve_student(config.student)
    output = config.output
    if output.exists() and not config.force:
        raise MindmirrorError(f"{output} already exists; pass --force to replace it")
    if not source.scratch:
        check_student(source, config.student_revision)

    records = load_distillation_data(config.data, config.split, task)
    data_fingerprint = fingerprint(records)
    stats = parse_stats(task, records)
    logger.info(
        "%d examples, %d CoTs (%.1f%% parsed), %d self-evaluations",
        stats.examples,
        stats.cots,
        100 * stats.cot_parse_rate,
        stats.self_evaluations,
    )
    train_records, val_records = split_records(records, config.val_fraction, config.seed)
    weight, form = config.loss_weight
    from mindmirror.training.student.trainer import uses_rationale

    with_rationale = uses_rationale(weight, form)
    build: dict[str, BuildResult] = {}
    build["cot"] = build_cot_pairs(
        train_records,
        task,
        num_cots=config.num_cots,
        label_source=config.label_source,
        need_rationale=with_rationale,
    )
    if not build["cot"].pairs:
        raise NoUsableDataError(
            f"{config.data}: no usable chains of thought to train on: {build['cot'].describe()}"
            + (
                "; the examples have no human labels, use --label-source teacher"
                if config.label_source == "human"
                else ""
            )
        )
    if config.self_evaluation:
        build["self_evaluation"] = build_self_evaluation_pairs(
            train_records,
            task,
            num_cots=config.num_cots,
            num_self_evaluations=config.num_self_evaluations,
        )
        if not build["self_evaluation"].pairs:
            raise NoUsableDataError(
                f"{config.data}: self-evaluation is on but there is no parseable teacher "
                f"self-evaluation ({build['self_evaluation'].describe()}); generate them with "
                "the teacher or train without stage 1 (--no-self-evaluation)"
            )
    for stage_name, built in build.items():
        logger.info("stage %s: %s", stage_name, built.describe())
    val_cot = build_cot_validation(val_records, task, label_source=config.label_source).pairs
    val_self = (
        build_self_evaluation_pairs(
            val_records,
            task,
            num_cots=config.num_cots,
            num_self_evaluations=config.num_self_evaluations,
        ).pairs
        if config.self_evaluation
        else []
    )
    replay: list[TrainingPair] = []
    if config.self_evaluation and config.replay_fraction > 0:
        pool = build["self_evaluation"].pairs
        count = round(config.replay_fraction * len(pool))
        replay = random.Random(config.seed).sample(pool, count)  # noqa: S311 (seeded, not crypto)

    work = config.resolved_work_dir
    from accelerate import PartialState

    state = PartialState(cpu=config.cpu)
    with state.main_process_first():
        _check_run_record(work, config, data_fingerprint)
    tokenizer = _prepare_tokenizer(config, source, train_records, task, work)
    learning_rate = config.learning_rate or (1e-3 if source.scratch else 5e-5)

    stages: list[StageResult] = []
    model = None
    cot_judge_fn = cot_judge(task)
    if config.self_evaluation:
        result, model = _train_stage(
            "self_evaluation",
            config=config,
            train_pairs=build["self_evaluation"].pairs,
            val_pairs=val_self,
            judge=verdict_judge,
            init=lambda: _initial_model(config, source, tokenizer),
            tokenizer=tokenizer,
            stage_dir=work / "stage1-self-evaluation",
            learning_rate=learning_rate,
            callbacks=callbacks,
        )
        stages.append(result)

    def stage2_init() -> T5ForConditionalGeneration:
        if config.self_evaluation:
            return _load_final(work / "stage1-self-evaluation")
        return _initial_model(config, source, tokenizer)

    rng = random.Random(config.seed + 1)  # noqa: S311 (seeded, not crypto)
    stage2_pairs = build["cot"].pairs + replay
    rng.shuffle(stage2_pairs)  # the Trainer reshuffles each epoch; this only fixes the pool order
    result, model = _train_stage(
        "cot",
        config=config,
        train_pairs=stage2_pairs,
        val_pairs=val_cot,
        judge=cot_judge_fn,
        init=stage2_init,
        tokenizer=tokenizer,
        stage_dir=work / "stage2-cot",
        learning_rate=learning_rate,
        callbacks=callbacks,
    )
    stages.append(result)
    if not state.is_main_process:
        return DistillResult(
            None, None, stages, build, len(records), len(train_records), len(val_records)
        )

    if model is None:  # stage 2 finished in an earlier run
        model = _load_final(work / "stage2-cot")
    model = model.to("cuda" if torch.cuda.is_available() and not config.cpu else "cpu")
    self_eval_validation: dict[str, float | None] = {}
    if config.self_evaluation and val_self:
        self_eval_validation = {
            "after_stage1": stages[0].validation.get("accuracy"),
            "final": _verdict_accuracy(model, tokenizer, val_self, config),
            "pairs": len(val_self),
        }
        logger.info(
            "held-out verdict accuracy: %s after stage 1, %.3f final",
            self_eval_validation["after_stage1"],
            self_eval_validation["final"],
        )
    teachers = sorted({r.teacher for r in records if r.teacher})
    max_cots = max(len(r.cots) for r in records)
    max_evals = max((len(c.self_evaluations) for r in records for c in r.cots), default=0)
    provenance = Provenance(
        base_model=source.description,
        teacher=", ".join(teachers) or None,
        num_cots=min(config.num_cots or max_cots, max_cots),
        num_self_evaluations=(
            min(config.num_self_evaluations or max_evals, max_evals)
            if config.self_evaluation
            else None
        ),
        self_evaluation=config.self_evaluation,
        rationale_weight=weight if form == "lambda" else None,
        loss_form=form,
        label_source=config.label_source,
        seed=config.seed,
        data_fingerprint=data_fingerprint,
        training_steps={stage.name: stage.steps for stage in stages},
        mindmirror_version=__version__,
        alpha=weight if form == "alpha" else None,
        replay_fraction=config.replay_fraction if config.self_evaluation else None,
        replay_pairs=len(replay),
        data=str(config.data),
        split=config.split,
        examples={"train": len(train_records), "validation": len(val_records)},
        pairs={name: len(built.pairs) for name, built in build.items()},
        skipped={name: dict(built.skipped) for name, built in build.items()},
        teacher_cot_parse_rate=round(stats.cot_parse_rate, 4),
        learning_rate=learning_rate,
        batch_size=config.batch_size,
        gradient_accumulation=config.gradient_accumulation,
        world_size=_world_size(),
        selection=config.select_by if val_records else "last checkpoint (no validation split)",
        stages={stage.name: stage.to_json() for stage in stages},
        self_evaluation_validation=self_eval_validation or None,
    )
    manifest = Manifest(
        task=task.name,
        label_space=list(task.label_space) if task.label_space else None,
        prefixes=DEFAULT_PREFIXES,
        self_evaluation=config.self_evaluation,
        max_input_length=config.max_input_length,
        max_label_length=config.max_label_length,
        max_rationale_length=config.max_rationale_length,
        generation=GenerationDefaults(
            max_new_tokens_predict=config.max_label_length,
            max_new_tokens_explain=config.max_rationale_length,
        ),
        provenance=provenance,
    )
    written = save_bundle(model.to("cpu"), tokenizer, manifest, output, force=config.force)
    logger.info("wrote the student bundle %s", output)
    if not config.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return DistillResult(
        output, written, stages, build, len(records), len(train_records), len(val_records)
    )
