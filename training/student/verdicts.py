"""The held-out verdict metric: how often the student's verdict agrees with the teacher's.

One rule for every place that measures it: stage 1's model selection (each generated text
judged by :func:`verdict_judge` in the Trainer's validation), the final student's agreement
that ``distill`` records in the manifest, and the self-evaluation table of ``mindmirror
evaluate`` (:func:`measure_verdicts`). The student's text is read with
:func:`~mindmirror.student.formats.read_verdict` only; an unreadable one never agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.formats import Prefixes, read_verdict
from mindmirror.student.tasks import Task
from mindmirror.training.student.examples import TrainingPair, cot_reasoning_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

__all__ = ["VerdictAgreement", "measure_verdicts", "teacher_verdicts", "verdict_judge"]


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
