"""One stage's training: the Trainer for a set of pairs, resumed from the stage's last complete
checkpoint, and its selected weights left in the stage's ``final/`` folder.

A stage lives in ``<work dir>/<stage folder>`` (:data:`STAGE_DIRS`): ``checkpoint-<step>/``
folders while it trains (one kept: the Trainer's ``save_total_limit``), then ``final/`` with
the selected weights and ``stage.json`` (its :class:`StageResult`). ``final/`` appears by a
rename, so a stage is either finished or resumable, never half-finished; a finished stage is
not retrained.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.student.examples import TrainingPair
from mindmirror.training.student.model import StudentSource

if TYPE_CHECKING:
    from mindmirror.training.student.distill import DistillConfig
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration, TrainerCallback

__all__ = [
    "STAGE_DIRS",
    "STAGE_RECORD",
    "StageResult",
    "StageRun",
    "last_complete_checkpoint",
    "steps_per_stage",
    "world_size",
]

logger = logging.getLogger(__name__)

STAGE_RECORD = "stage.json"
#: stage name -> its folder in the work directory
STAGE_DIRS = {"self_evaluation": "stage1-self-evaluation", "cot": "stage2-cot"}

Judge = Callable[[str, TrainingPair], tuple[bool, bool]]


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


def world_size() -> int:
    """Processes of a DDP run (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


@dataclass
class StageRun:
    """What the stages of one run share: its settings, student, tokenizer and work directory."""

    config: DistillConfig
    source: StudentSource
    tokenizer: PreTrainedTokenizerBase
    work: Path
    learning_rate: float
    callbacks: Sequence[TrainerCallback] = ()

    def stage_dir(self, name: str) -> Path:
        return self.work / STAGE_DIRS[name]

    def initial_model(self) -> T5ForConditionalGeneration:
        """The weights the first stage starts from: a seeded random init or the pretrained T5."""
        import torch
        from mindmirror.training.student.model import load_student_model, scratch_config
        from transformers import T5ForConditionalGeneration

        config, tokenizer = self.config, self.tokenizer
        if self.source.scratch:
            torch.manual_seed(config.seed)  # the same random init on every rank and every rerun
            return T5ForConditionalGeneration(
                scratch_config(self.source.scratch, tokenizer, config.dropout)
            )
        model = load_student_model(
            self.source, revision=config.student_revision, dropout=config.dropout
        )
        if model.config.vocab_size < len(tokenizer):
            raise MindmirrorError(
                f"{config.student}: tokenizer has {len(tokenizer)} tokens but the model only "
                f"{model.config.vocab_size} embeddings"
            )
        return model

    def final_model(self, name: str) -> T5ForConditionalGeneration:
        """The selected weights of a finished stage."""
        from transformers import T5ForConditionalGeneration

        return T5ForConditionalGeneration.from_pretrained(
            self.stage_dir(name) / "final", use_safetensors=True
        )

    def train(
        self,
        name: str,
        train_pairs: list[TrainingPair],
        val_pairs: list[TrainingPair],
        judge: Judge,
        *,
        init: Callable[[], T5ForConditionalGeneration],
    ) -> tuple[StageResult, T5ForConditionalGeneration | None]:
        """Train one stage (or find it finished: then no model) and leave its selected weights
        in ``final/``; validation on ``val_pairs`` picks them, judged by ``judge``."""
        from accelerate import PartialState
        from mindmirror.training.student.trainer import (
            EvaluateAtEnd,
            MultiTaskTrainer,
            PairCollator,
            PairDataset,
            make_compute_metrics,
            uses_rationale,
        )

        config, tokenizer, stage_dir = self.config, self.tokenizer, self.stage_dir(name)
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
            PairDataset(
                val_pairs, tokenizer, with_rationale=with_rationale, with_index=True, **lengths
            )
            if val_pairs
            else None
        )
        _warn_truncated(name, train_set)
        total_steps = steps_per_stage(config, name, len(train_set))
        select = val_set is not None
        args = _training_arguments(config, name, stage_dir, total_steps, self.learning_rate, select)
        trainer = MultiTaskTrainer(
            model=init(),  # after the arguments: a bad --bf16 fails before a model loads
            args=args,
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=PairCollator(pad_token_id=tokenizer.pad_token_id),
            processing_class=tokenizer,
            compute_metrics=make_compute_metrics(tokenizer, val_pairs, judge) if select else None,
            callbacks=[EvaluateAtEnd(), *self.callbacks],
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

        first_loss, last_loss = _loss_summary(trainer.state.log_history)
        result = StageResult(
            name=name,
            pairs=len(train_set),
            steps=trainer.state.global_step,
            best_metric=trainer.state.best_metric,
            metric=config.select_by if select else None,
            first_loss=first_loss,
            last_loss=last_loss,
            validation=_best_validation(trainer.state) if select else {},
            resumed_from=resumed_from,
        )
        tmp = stage_dir / ".final.tmp"
        state = PartialState()
        if state.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        state.wait_for_everyone()
        trainer.save_model(str(tmp))  # the selected (best) weights; only rank 0 writes
        if state.is_main_process:
            record = json.dumps(result.to_json(), indent=2)
            (tmp / STAGE_RECORD).write_text(record, encoding="utf-8")
            os.replace(tmp, final)
            for old in stage_dir.glob("checkpoint-*"):  # the stage is done; free the disk
                shutil.rmtree(old, ignore_errors=True)
        state.wait_for_everyone()
        return result, trainer.model


def _warn_truncated(name: str, train_set: Any) -> None:
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


def steps_per_stage(config: DistillConfig, stage: str, pairs: int) -> int:
    """Optimizer steps of one stage: its step limit, else its epochs over ``pairs``."""
    if config.stage_max_steps(stage):
        return config.stage_max_steps(stage)
    batches = math.ceil(math.ceil(pairs / world_size()) / config.batch_size)
    per_epoch = max(1, math.ceil(batches / config.gradient_accumulation))
    return max(1, math.ceil(config.epochs * per_epoch))


def _use_bf16(config: DistillConfig) -> bool:
    import torch

    available = not config.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.bf16 and not available:
        raise MindmirrorError("--bf16 needs a CUDA GPU with bfloat16 support")
    return available if config.bf16 is None else config.bf16


def _training_arguments(
    config: DistillConfig,
    name: str,
    stage_dir: Path,
    total_steps: int,
    learning_rate: float,
    select: bool,
) -> Any:
    """The Trainer's settings for one stage: validate and checkpoint
    ``evaluations_per_stage`` times, keep the best checkpoint when there is validation data."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    interval = max(1, math.ceil(total_steps / config.evaluations_per_stage))
    return Seq2SeqTrainingArguments(
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


def _loss_summary(log_history: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return (losses[0], losses[-1]) if losses else (None, None)


def _best_validation(trainer_state: Any) -> dict[str, float]:
    """The validation metrics logged at the selected checkpoint's step."""
    best: dict[str, float] = {}
    for entry in trainer_state.log_history:
        if entry.get("step") == trainer_state.best_global_step and any(
            k.startswith("eval_") for k in entry
        ):
            best = {
                k.removeprefix("eval_"): float(v)
                for k, v in entry.items()
                if k.startswith("eval_") and isinstance(v, int | float)
            }
    return best
