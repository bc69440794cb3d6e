"""The held-out verdict metrics: how often the student's verdict agrees with the teacher's, and
how well its scored verdict tells right reasonings from wrong ones where the truth is known.

Agreement with the teacher has one rule for every place that measures it: stage 1's model
selection (each generated text judged by :func:`verdict_judge` in the Trainer's validation),
the final student's agreement that ``distill`` records in the manifest, and the self-evaluation
table of ``mindmirror evaluate`` (:func:`measure_verdicts`). The student's text is read with
:func:`~mindmirror.student.formats.read_verdict` only; an unreadable one never agrees.

Against the truth (:func:`truth_cases`, :func:`score_cases`, :class:`TruthReport`): every
teacher chain of thought of an example with a human label is right or wrong by the task's
judgement of its answer; the student's scores (:mod:`mindmirror.student.verdict_scores`) are
measured on them (AUROC, balanced accuracy, calibration error), and ``distill`` fits the
bundle's calibration on the held-out ones. Without human labels the teacher's majority verdict
stands in for the truth, and the manifest says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.formats import Prefixes, Verdict, read_verdict
from mindmirror.student.tasks import Task
from mindmirror.student.verdict_scores import (
    VerdictCalibration,
    auroc,
    balanced_accuracy,
    expected_calibration_error,
    fit_calibration,
    score_verdict,
    verdict_token_ids,
)
from mindmirror.training.student.examples import TrainingPair, cot_reasoning_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

__all__ = [
    "GOLD_LABELS",
    "TEACHER_VERDICTS",
    "TruthReport",
    "VerdictAgreement",
    "measure_verdicts",
    "score_cases",
    "teacher_verdicts",
    "truth_cases",
    "verdict_judge",
]

#: what the truth of a reasoning was read from (:attr:`VerdictCalibration.fitted_on`)
GOLD_LABELS = "gold labels"
TEACHER_VERDICTS = "teacher verdicts"


def _student_verdict(text: str) -> str | None:
    verdict = read_verdict(text)
    return verdict.value if verdict is not None else None


def verdict_judge(text: str, pair: TrainingPair) -> tuple[bool, bool]:
    """Judge a generated stage-1 verdict against the teacher's: (readable, agrees)."""
    verdict = _student_verdict(text)
    return verdict is not None, verdict is not None and verdict == pair.label


@dataclass(frozen=True)
class VerdictAgreement:
    """The student's verdict (``None``: unreadable) and the teacher's, case by case."""

    student: list[str | None]
    teacher: list[str]

    @property
    def total(self) -> int:
        return len(self.teacher)

    @property
    def agreeing(self) -> int:
        return sum(s == t for s, t in zip(self.student, self.teacher, strict=True))

    @property
    def readable(self) -> int:
        return sum(s is not None for s in self.student)

    @property
    def accuracy(self) -> float:
        return self.agreeing / self.total if self.total else 0.0


def teacher_verdicts(
    records: Sequence[DistillationRecord], task: Task, prefixes: Prefixes
) -> list[tuple[str, str]]:
    """(student input, teacher verdict) for every parsed teacher self-evaluation in
    ``records``: the cases ``mindmirror evaluate`` scores."""
    cases: list[tuple[str, str]] = []
    for record in records:
        example = record.example()
        for cot in record.cots:
            reasoning = cot_reasoning_text(task, cot, example)
            source = prefixes.self_eval_input(record.question, reasoning, "predict")
            cases += [(source, e.verdict.value) for e in cot.self_evaluations if e.verdict]
    return cases


def measure_verdicts(
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[tuple[str, str]],
    *,
    max_new_tokens: int,
    max_input_length: int,
    batch_size: int,
    num_beams: int = 1,
    progress: bool = True,
    desc: str = "held-out verdicts",
) -> VerdictAgreement:
    """Generate the student's verdict for each (input, teacher verdict) case and compare."""
    from mindmirror.training.student.generation import generate_texts

    inputs = list(dict.fromkeys(source for source, _ in cases))  # M verdicts share one input
    texts = generate_texts(
        model,
        tokenizer,
        inputs,
        max_new_tokens=max_new_tokens,
        max_input_length=max_input_length,
        batch_size=batch_size,
        num_beams=num_beams,
        progress=progress,
        desc=desc,
    )
    answers = {source: _student_verdict(text) for source, text in zip(inputs, texts, strict=True)}
    return VerdictAgreement(
        student=[answers[source] for source, _ in cases],
        teacher=[verdict for _, verdict in cases],
    )


def truth_cases(
    records: Sequence[DistillationRecord],
    task: Task,
    prefixes: Prefixes,
    num_cots: int | None = None,
) -> tuple[list[tuple[str, bool]], str]:
    """(student input, whether the reasoning is right) for the first ``num_cots`` teacher
    chains of thought of each record, and what the truth was read from.

    With human labels: the chain is right when its answer is the label (an unparseable answer
    is wrong). Records without one are left out; when none has one, the teacher's own verdicts
    stand in: the majority of its correct/wrong verdicts on the chain (uncertain ones and ties
    give no case)."""
    labelled = [record for record in records if record.label is not None]
    source = GOLD_LABELS if labelled else TEACHER_VERDICTS
    cases: list[tuple[str, bool]] = []
    for record in labelled or records:
        example = record.example()
        for cot in record.cots[:num_cots]:
            reasoning = cot_reasoning_text(task, cot, example)
            if not reasoning:
                continue
            if labelled:
                truth: bool | None = task.is_correct(cot.answer, record.label)
            else:
                votes = [e.verdict for e in cot.self_evaluations]
                right, wrong = votes.count(Verdict.CORRECT), votes.count(Verdict.WRONG)
                truth = None if right == wrong else right > wrong
            if truth is not None:
                source_text = prefixes.self_eval_input(record.question, reasoning, "predict")
                cases.append((source_text, truth))
    return cases, source


@dataclass(frozen=True)
class TruthReport:
    """The student's scored verdicts on reasonings of known truth."""

    source: str  # GOLD_LABELS or TEACHER_VERDICTS
    margins: list[float]
    scores: list[float]  # calibrated
    truths: list[bool]
    threshold: float

    @property
    def right(self) -> int:
        return sum(self.truths)

    @property
    def auroc(self) -> float | None:
        return auroc(self.margins, self.truths)

    @property
    def balanced_accuracy(self) -> float | None:
        return balanced_accuracy([s >= self.threshold for s in self.scores], self.truths)

    @property
    def calibration_error(self) -> float | None:
        return expected_calibration_error(self.scores, self.truths)

    def calibrate(self) -> VerdictCalibration:
        """Fit the calibration on these cases (what ``distill`` records)."""
        return fit_calibration(self.margins, self.truths, fitted_on=self.source)

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "truth_from": self.source,
            "reasonings": len(self.truths),
            "right": self.right,
            "auroc": self.auroc,
            "balanced_accuracy": self.balanced_accuracy,
            "calibration_error": self.calibration_error,
            "threshold": self.threshold,
        }


def score_cases(
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[tuple[str, bool]],
    source: str,
    calibration: VerdictCalibration | None,
    *,
    max_input_length: int,
    batch_size: int,
    progress: bool = True,
    desc: str = "scoring verdicts",
) -> TruthReport:
    """Score the student's verdict on each case, read with ``calibration``."""
    from mindmirror.training.student.generation import first_token_logprobs

    tokens = verdict_token_ids(lambda text: tokenizer(text)["input_ids"])
    inputs = list(dict.fromkeys(text for text, _ in cases))
    rows = first_token_logprobs(
        model,
        tokenizer,
        inputs,
        tokens,
        max_input_length=max_input_length,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    by_input = {
        text: score_verdict(row, calibration) for text, row in zip(inputs, rows, strict=True)
    }
    scored = [by_input[text] for text, _ in cases]
    return TruthReport(
        source=source,
        margins=[s.margin for s in scored],
        scores=[s.score for s in scored],
        truths=[truth for _, truth in cases],
        threshold=(calibration or VerdictCalibration()).threshold,
    )
