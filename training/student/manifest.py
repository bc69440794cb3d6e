"""The manifest of a distilled student: what it is, and how and from what it was trained.

The bundle's ``mindmirror.json`` (:class:`~mindmirror.student.bundle.Manifest`): the task, the
prefixes, lengths and generation defaults the student was trained with, and the provenance of
the run (base model, teacher, N and M, loss, data, steps and validation of each stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mindmirror.student.bundle import GenerationDefaults, Manifest, Provenance
from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks import Task
from mindmirror.student.verdict_scores import VerdictCalibration
from mindmirror.training.student.data import DistillData
from mindmirror.training.student.model import StudentSource
from mindmirror.training.student.stage import StageResult, world_size

from mindmirror import __version__

if TYPE_CHECKING:
    from mindmirror.training.student.distill import DistillConfig

__all__ = ["build_manifest"]


def build_manifest(
    config: DistillConfig,
    task: Task,
    source: StudentSource,
    data: DistillData,
    stages: list[StageResult],
    learning_rate: float,
    self_evaluation_validation: dict[str, float | None] | None,
    verdict_calibration: VerdictCalibration | None = None,
) -> Manifest:
    """The manifest of the run's bundle (its checksums are added when the bundle is saved)."""
    weight, form = config.loss_weight
    records = data.records
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
        drop_judged_wrong=config.drop_judged_wrong,
        drop_disagreeing=config.drop_disagreeing,
        seed=config.seed,
        data_fingerprint=data.fingerprint,
        training_steps={stage.name: stage.steps for stage in stages},
        mindmirror_version=__version__,
        alpha=weight if form == "alpha" else None,
        replay_fraction=config.replay_fraction if config.self_evaluation else None,
        replay_pairs=len(data.replay),
        data=str(config.data),
        split=config.split,
        examples={"train": len(data.train_records), "validation": len(data.val_records)},
        pairs={name: len(built.pairs) for name, built in data.build.items()},
        skipped={name: dict(built.skipped) for name, built in data.build.items()},
        questions_without_pairs={
            name: built.questions_without_pairs for name, built in data.build.items()
        },
        teacher_cot_parse_rate=round(data.stats.cot_parse_rate, 4),
        learning_rate=learning_rate,
        batch_size=config.batch_size,
        gradient_accumulation=config.gradient_accumulation,
        world_size=world_size(),
        selection=config.select_by if data.val_records else "last checkpoint (no validation split)",
        stages={stage.name: stage.to_json() for stage in stages},
        self_evaluation_validation=self_evaluation_validation,
    )
    return Manifest(
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
        verdict_calibration=verdict_calibration,
        provenance=provenance,
    )
