"""Turn a distillation set into the student's multi-task training pairs.

A *pair* is one source with its two targets, trained together (distilling-step-by-step's
task-prefix scheme): ``predict: <x>`` → label and ``explain: <x>`` → rationale.

- Stage 1 (self-evaluation): x = the question with one teacher chain of thought; label = the
  teacher's verdict, rationale = the evaluation's rationale. One pair per parsed
  self-evaluation.
- Stage 2 (chain of thought): x = the question; label = the k-th CoT's pseudo-label
  (``label_source="teacher"``, the paper's), the question's majority answer over the teacher's
  chains (``"majority"``, ``"weighted-majority"``) or the human label (``"human"``), rationale =
  the k-th CoT's rationale. One pair per parsed CoT, less those the cleaning rules of
  :mod:`~mindmirror.training.student.cleaning` drop (all off by default).

Teacher outputs that cannot be used are skipped and counted by reason, so a run can say what
it left out. Inputs are built with the manifest's :class:`~mindmirror.student.formats.Prefixes`,
never literal strings.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mindmirror.student.bundle import LabelSource
from mindmirror.student.distillation import DistillationRecord, TeacherCoT
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import DEFAULT_PREFIXES, Prefixes
from mindmirror.student.tasks import Example, Task
from mindmirror.training.student.cleaning import (
    MAJORITY_SOURCES,
    agrees,
    check_rules,
    judged_wrong,
    majority_label,
)

__all__ = [
    "BuildResult",
    "LabelSource",
    "NoUsableDataError",
    "Stage",
    "TrainingPair",
    "build_cot_pairs",
    "build_cot_validation",
    "build_self_evaluation_pairs",
    "cot_judge",
    "cot_reasoning_text",
    "split_records",
]

Stage = Literal["self_evaluation", "cot"]


class NoUsableDataError(MindmirrorError, ValueError):
    """Nothing in the data can be trained on (every output unparseable, no labels...)."""


@dataclass(frozen=True)
class TrainingPair:
    """One source with its predict and explain targets."""

    record_id: str
    stage: Stage
    predict_input: str
    label: str
    explain_input: str
    rationale: str
    #: the record's example, for task answer parsing during validation (CQA needs the choices)
    example: Example | None = field(default=None, compare=False, repr=False)


@dataclass
class BuildResult:
    pairs: list[TrainingPair]
    #: reason -> how many teacher outputs were skipped for it
    skipped: Counter[str] = field(default_factory=Counter)
    #: teacher outputs looked at (CoTs for stage 2, self-evaluations for stage 1)
    considered: int = 0
    #: questions that had CoTs but gave no pair (every one skipped), counted apart from
    #: ``skipped`` because they are questions, not teacher outputs
    questions_without_pairs: int = 0

    def describe(self) -> str:
        used = f"{len(self.pairs)} pairs from {self.considered} teacher outputs"
        if self.skipped:
            reasons = ", ".join(
                f"{count} {reason}" for reason, count in sorted(self.skipped.items())
            )
            used += f" (skipped: {reasons})"
        if self.questions_without_pairs:
            used += f"; {self.questions_without_pairs} questions left without any pair"
        return used


def cot_reasoning_text(task: Task, cot: TeacherCoT, example: Example | None = None) -> str:
    """The chain of thought as the teacher's self-evaluation saw it: its text, trimmed of any
    run-on few-shot continuation; rebuilt from rationale and answer if the text is empty."""
    text = task.trim_completion(cot.text)
    if text:
        return text
    if cot.answer is not None:
        return task.format_cot(cot.rationale, cot.answer, example)
    return cot.rationale.strip()


def _check_count(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be at least 1 (or None for all), not {value}")


def build_self_evaluation_pairs(
    records: Sequence[DistillationRecord],
    task: Task,
    *,
    prefixes: Prefixes = DEFAULT_PREFIXES,
    num_cots: int | None = None,
    num_self_evaluations: int | None = None,
) -> BuildResult:
    """Stage-1 pairs: one per parsed self-evaluation of the first ``num_cots`` CoTs (all when
    ``None``), using the first ``num_self_evaluations`` evaluations of each."""
    _check_count("num_cots", num_cots)
    _check_count("num_self_evaluations", num_self_evaluations)
    result = BuildResult(pairs=[])
    for record in records:
        example = record.example()
        for cot in record.cots[:num_cots]:
            reasoning = cot_reasoning_text(task, cot, example)
            for evaluation in cot.self_evaluations[:num_self_evaluations]:
                result.considered += 1
                if evaluation.verdict is None:
                    result.skipped["self-evaluations without a verdict"] += 1
                    continue
                if not evaluation.rationale.strip():
                    result.skipped["self-evaluations without a rationale"] += 1
                    continue
                if not reasoning:
                    result.skipped["self-evaluations of an empty chain of thought"] += 1
                    continue
                result.pairs.append(
                    TrainingPair(
                        record_id=record.id,
                        stage="self_evaluation",
                        predict_input=prefixes.self_eval_input(
                            record.question, reasoning, "predict"
                        ),
                        label=evaluation.verdict.value,
                        explain_input=prefixes.self_eval_input(
                            record.question, reasoning, "explain"
                        ),
                        rationale=evaluation.rationale.strip(),
                        example=example,
                    )
                )
    return result


def build_cot_pairs(
    records: Sequence[DistillationRecord],
    task: Task,
    *,
    prefixes: Prefixes = DEFAULT_PREFIXES,
    num_cots: int | None = None,
    label_source: LabelSource = "teacher",
    need_rationale: bool = True,
    num_self_evaluations: int | None = None,
    drop_judged_wrong: bool = False,
    drop_disagreeing: bool = False,
) -> BuildResult:
    """Stage-2 pairs: one per usable CoT among the first ``num_cots`` of each record.

    With ``label_source="teacher"`` a CoT is usable when its pseudo-label parsed; with
    ``"human"`` the record must have a human label (the CoT's own answer is then not needed,
    as in distilling-step-by-step, which pairs teacher rationales with gold labels); with
    ``"majority"`` or ``"weighted-majority"`` the question's vote is the label of every one of
    its CoTs. ``need_rationale=False`` (standard distillation, labels only) keeps CoTs whose
    rationale is empty. Then the cleaning rules of
    :mod:`~mindmirror.training.student.cleaning`: ``drop_judged_wrong`` (by the first
    ``num_self_evaluations`` verdicts) and ``drop_disagreeing``. A CoT left out is counted
    under the first reason that applies, in the order of the checks below.
    """
    _check_count("num_cots", num_cots)
    check_rules(label_source, drop_disagreeing)
    # the agreement filter compares the CoT's own answer, so it needs one, as teacher labels do
    needs_answer = label_source == "teacher" or drop_disagreeing
    result = BuildResult(pairs=[])
    for record in records:
        example = record.example()
        voted = (
            majority_label(
                task,
                record,
                weighted=label_source == "weighted-majority",
                drop_judged_wrong=drop_judged_wrong,
                num_self_evaluations=num_self_evaluations,
            )
            if label_source in MAJORITY_SOURCES
            else None
        )
        cots = record.cots[:num_cots]
        before = len(result.pairs)
        for cot in cots:
            result.considered += 1
            if label_source in MAJORITY_SOURCES:
                label = voted
            else:
                label = record.label if label_source == "human" else cot.answer
            if label_source == "human" and label is None:
                result.skipped["CoTs of examples without a human label"] += 1
            elif needs_answer and cot.answer is None:
                result.skipped["CoTs without a parseable answer"] += 1
            elif need_rationale and not cot.rationale.strip():
                result.skipped["CoTs without a rationale"] += 1
            elif drop_judged_wrong and judged_wrong(cot, num_self_evaluations):
                result.skipped["CoTs judged wrong by the teacher's self-evaluations"] += 1
            elif label is None:  # a majority source, and no chain of the question voted
                result.skipped["CoTs of questions without a majority answer"] += 1
            elif drop_disagreeing and not agrees(task, cot, label):
                result.skipped["CoTs whose answer disagrees with the label"] += 1
            else:
                result.pairs.append(_cot_pair(record, label, cot.rationale, example, prefixes))
        if cots and len(result.pairs) == before:
            result.questions_without_pairs += 1
    return result


def _cot_pair(
    record: DistillationRecord, label: str, rationale: str, example: Example, prefixes: Prefixes
) -> TrainingPair:
    """The stage-2 pair of one question with this label and rationale."""
    return TrainingPair(
        record_id=record.id,
        stage="cot",
        predict_input=prefixes.cot_input(record.question, "predict"),
        label=label,
        explain_input=prefixes.cot_input(record.question, "explain"),
        rationale=rationale.strip(),
        example=example,
    )


def build_cot_validation(
    records: Sequence[DistillationRecord],
    task: Task,
    *,
    prefixes: Prefixes = DEFAULT_PREFIXES,
    label_source: LabelSource = "teacher",
    num_self_evaluations: int | None = None,
    drop_judged_wrong: bool = False,
) -> BuildResult:
    """Stage-2 validation: one pair per held-out example, whatever N is.

    The gold label is the human one when the example has it (the measure we care about).
    Without one, ``"human"`` skips the example and the other sources take the teacher's
    majority answer, the label training would give it: weighed by the verdicts for
    ``"weighted-majority"`` (plain for ``"teacher"`` and ``"majority"``), without the chains
    ``drop_judged_wrong`` drops. The rationale (used for the validation loss) is that of the
    first CoT agreeing with the gold label, else the first one with a rationale.
    """
    result = BuildResult(pairs=[])
    for record in records:
        result.considered += 1
        gold = record.label
        if gold is None and label_source != "human":
            gold = majority_label(
                task,
                record,
                weighted=label_source == "weighted-majority",
                drop_judged_wrong=drop_judged_wrong,
                num_self_evaluations=num_self_evaluations,
            )
        if gold is None:
            result.skipped["held-out examples without a label"] += 1
            continue
        with_rationale = [cot for cot in record.cots if cot.rationale.strip()]
        agreeing = [cot for cot in with_rationale if task.is_correct(cot.answer, gold)]
        chosen = (agreeing or with_rationale or [None])[0]
        example = record.example()
        rationale = chosen.rationale if chosen is not None else ""
        result.pairs.append(_cot_pair(record, gold, rationale, example, prefixes))
    return result


def split_records(
    records: Sequence[DistillationRecord], val_fraction: float, seed: int
) -> tuple[list[DistillationRecord], list[DistillationRecord]]:
    """Carve a validation split from the training records, by example (never by pair: the
    CoTs and evaluations of one question must not sit on both sides)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if val_fraction == 0.0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)  # noqa: S311 (seeded split, not crypto)
    size = min(len(records) - 1, max(1, round(len(records) * val_fraction)))
    held_out = set(order[:size])
    train = [r for i, r in enumerate(records) if i not in held_out]
    val = [r for i, r in enumerate(records) if i in held_out]
    return train, val


def cot_judge(task: Task) -> Callable[[str, TrainingPair], tuple[bool, bool]]:
    """Judge a generated stage-2 label: (parsed as a label, correct against the pair's)."""

    def judge(text: str, pair: TrainingPair) -> tuple[bool, bool]:
        parsed = task.read_label(text, pair.example)
        return parsed is not None, parsed is not None and task.is_correct(parsed, pair.label)

    return judge
