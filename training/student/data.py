"""A run's data: the distillation set, split by question into training and held-out parts,
turned into each stage's pairs, and the stage-1 pairs replayed during stage 2.

Everything here is decided before any training starts, so a data problem (nothing parseable,
no human labels for ``--label-source human``, no verdicts for a rule that reads them) fails the
run before a model is loaded. Stage 2's label source and cleaning rules
(:mod:`~mindmirror.training.student.cleaning`) reach its training pairs and its held-out labels
alike; stage 1's pairs do not depend on them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mindmirror.student.distillation import (
    DistillationRecord,
    ParseStats,
    fingerprint,
    load_distillation_data,
    parse_stats,
)
from mindmirror.student.tasks import Task
from mindmirror.training.student.cleaning import verdict_tally
from mindmirror.training.student.examples import (
    BuildResult,
    NoUsableDataError,
    TrainingPair,
    build_cot_pairs,
    build_cot_validation,
    build_self_evaluation_pairs,
    split_records,
)

if TYPE_CHECKING:
    from mindmirror.training.student.distill import DistillConfig

__all__ = ["DistillData", "prepare_data"]

logger = logging.getLogger(__name__)


@dataclass
class DistillData:
    records: list[DistillationRecord]
    fingerprint: str
    stats: ParseStats
    train_records: list[DistillationRecord]
    val_records: list[DistillationRecord]
    #: stage name -> its training pairs and what was skipped
    build: dict[str, BuildResult]
    val_cot: list[TrainingPair]
    val_self_evaluation: list[TrainingPair]
    #: stage-1 pairs mixed into stage 2 (``replay_fraction``)
    replay: list[TrainingPair]

    def stage2_pairs(self, seed: int) -> list[TrainingPair]:
        """Stage 2's training set: its own pairs and the replayed ones, in a seeded order (the
        Trainer reshuffles each epoch; this only fixes the pool order)."""
        pairs = self.build["cot"].pairs + self.replay
        random.Random(seed + 1).shuffle(pairs)  # noqa: S311 (seeded, not crypto)
        return pairs


def prepare_data(config: DistillConfig, task: Task) -> DistillData:
    """Read ``config.data`` and build every pair the run trains and validates on."""
    from mindmirror.training.student.trainer import uses_rationale  # imports torch

    records = load_distillation_data(config.data, config.split, task)
    stats = parse_stats(task, records)
    logger.info(
        "%d examples, %d CoTs (%.1f%% parsed), %d self-evaluations",
        stats.examples,
        stats.cots,
        100 * stats.cot_parse_rate,
        stats.self_evaluations,
    )
    train_records, val_records = split_records(records, config.val_fraction, config.seed)
    build: dict[str, BuildResult] = {}
    _check_verdicts(config, train_records)
    build["cot"] = build_cot_pairs(
        train_records,
        task,
        num_cots=config.num_cots,
        label_source=config.label_source,
        need_rationale=uses_rationale(*config.loss_weight),
        num_self_evaluations=config.num_self_evaluations,
        drop_judged_wrong=config.drop_judged_wrong,
        drop_disagreeing=config.drop_disagreeing,
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
        build["self_evaluation"] = _self_evaluation_pairs(config, train_records, task)
        if not build["self_evaluation"].pairs:
            raise NoUsableDataError(
                f"{config.data}: self-evaluation is on but there is no parseable teacher "
                f"self-evaluation ({build['self_evaluation'].describe()}); generate them with "
                "the teacher or train without stage 1 (--no-self-evaluation)"
            )
    for stage_name, built in build.items():
        logger.info("stage %s: %s", stage_name, built.describe())
    return DistillData(
        records=records,
        fingerprint=fingerprint(records),
        stats=stats,
        train_records=train_records,
        val_records=val_records,
        build=build,
        val_cot=build_cot_validation(
            val_records,
            task,
            label_source=config.label_source,
            num_self_evaluations=config.num_self_evaluations,
            drop_judged_wrong=config.drop_judged_wrong,
        ).pairs,
        val_self_evaluation=(
            _self_evaluation_pairs(config, val_records, task).pairs
            if config.self_evaluation
            else []
        ),
        replay=_replay(config, build),
    )


def _check_verdicts(config: DistillConfig, records: list[DistillationRecord]) -> None:
    """A rule that reads the teacher's verdicts on data without any would silently do nothing
    (nothing dropped, every vote weighing 0): refuse it instead."""
    readers = [
        flag
        for flag, on in (
            ("--drop-judged-wrong", config.drop_judged_wrong),
            ("--label-source weighted-majority", config.label_source == "weighted-majority"),
        )
        if on
    ]
    if not readers:
        return
    m = config.num_self_evaluations
    if not any(verdict_tally(cot, m) for record in records for cot in record.cots):
        raise NoUsableDataError(
            f"{config.data}: {' and '.join(readers)} read the teacher's self-evaluation "
            "verdicts, and the training data has none; generate them with the teacher or drop "
            "the option"
        )


def _self_evaluation_pairs(
    config: DistillConfig, records: list[DistillationRecord], task: Task
) -> BuildResult:
    return build_self_evaluation_pairs(
        records,
        task,
        num_cots=config.num_cots,
        num_self_evaluations=config.num_self_evaluations,
    )


def _replay(config: DistillConfig, build: dict[str, BuildResult]) -> list[TrainingPair]:
    if not (config.self_evaluation and config.replay_fraction > 0):
        return []
    pool = build["self_evaluation"].pairs
    count = round(config.replay_fraction * len(pool))
    return random.Random(config.seed).sample(pool, count)  # noqa: S311 (seeded, not crypto)
