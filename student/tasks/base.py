"""What every task defines: how an example becomes text, and how answers are read and judged.

A task is the only place that knows a dataset's shape. The teacher uses it to build prompts and
parse completions, training uses it to build targets, evaluation and the service use it to judge
and normalize answers. Subclasses override a handful of small methods; everything else here is
shared behaviour.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mindmirror.student.errors import MindmirrorError

__all__ = [
    "NO_CHECK",
    "CoTExemplar",
    "Example",
    "RationaleCheck",
    "SelfEvalExemplar",
    "Task",
    "TaskDataError",
    "check_choice",
    "normalize_text",
    "stated_choice",
]


def normalize_text(text: str) -> str:
    """How classification and QA tasks compare label text: lower-case, trimmed, spaces
    collapsed, trailing punctuation dropped."""
    return re.sub(r"\s+", " ", text).strip().strip(".!?\"'").strip().lower()


def stated_choice(rationale: str, choices: list[str]) -> str | None:
    """Which of ``choices`` (normalized, see :func:`normalize_text`) a rationale settles on, or
    ``None`` when it names none.

    The last sentence that names a choice decides, and in it the choice named first (the longer
    one where two start at the same place: "super market" over "market"). A choice counts where
    it starts a word; its end may run on ("clothing stores" names "clothing store"). Measured on
    the PaLM CommonsenseQA rationales ("Of the above choices, only X ..."), this agrees with the
    teacher's own answer on 884 of the 896 that name a choice; the last choice named agrees on
    855 (the sentence names what X is compared with after X).
    """
    text = normalize_text(rationale)
    sentences = [s for s in re.split(r"(?<=[.!?;])\s+", text) if s]
    for sentence in reversed(sentences):
        named = []
        for choice in choices:
            start = sentence.find(choice) if choice else -1
            while start != -1:
                if start == 0 or not sentence[start - 1].isalnum():
                    named.append((start, -len(choice), choice))
                    break
                start = sentence.find(choice, start + 1)
        if named:
            return min(named)[2]
    return None


@dataclass(frozen=True)
class RationaleCheck:
    """Whether a rationale supports an answer (:meth:`Task.check_rationale`).

    ``consistent`` is ``None`` where no check applies: the task has none, or this rationale
    gives it nothing to check (a CQA rationale that names none of the choices). ``steps`` and
    ``steps_right`` count the computation steps the rationale states and those that are right
    (arithmetic tasks; 0 elsewhere); ``stated`` is what the rationale itself concludes, as text
    (a number, a choice); ``reason`` says in a few words why it does not support the answer (or
    why nothing was checked), empty when it does.
    """

    consistent: bool | None
    steps: int = 0
    steps_right: int = 0
    stated: str | None = None
    reason: str = ""


#: What a task without a rationale check answers.
NO_CHECK = RationaleCheck(None, reason="task has no check")


def check_choice(rationale: str, label: str | None, choices: list[str]) -> RationaleCheck:
    """Whether a rationale settles on ``label`` among ``choices`` (all normalized): the check of
    tasks with a closed set of answers (CQA's five choices, a spec task's labels). A rationale
    that names no choice is not checked (``None``)."""
    if not choices:
        return RationaleCheck(None, reason="no choices to check against")
    stated = stated_choice(rationale, choices)
    if stated is None:
        return RationaleCheck(None, reason="names none of the choices")
    if label is None:
        return RationaleCheck(False, stated=stated, reason="the answer cannot be read")
    if stated != label:
        return RationaleCheck(False, stated=stated, reason=f"settles on {stated!r}, not {label!r}")
    return RationaleCheck(True, stated=stated)


class TaskDataError(MindmirrorError, ValueError):
    """A data record does not fit the task (missing field, label outside the label space...)."""


@dataclass(frozen=True)
class Example:
    """One task example as every stage sees it.

    ``question`` is the text the student reads (already formatted, e.g. with the answer
    choices); ``label`` is the normalized human label when the dataset has one; ``fields`` keeps
    task-specific extras (such as CQA's choices) needed to parse answers.
    """

    id: str
    question: str
    label: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CoTExemplar:
    """A few-shot chain-of-thought demonstration: the question and the full teacher answer."""

    question: str
    answer: str  # rationale followed by the task's answer sentence


@dataclass(frozen=True)
class SelfEvalExemplar:
    """A few-shot self-evaluation demonstration (Mind's Mirror prompt format)."""

    question: str
    reasoning: str
    evaluation: str  # ends with "Evaluation result: the given answer is <verdict>."


class Task(ABC):
    """Base class for a task. Subclasses set the class attributes and the abstract methods."""

    #: registry name, e.g. ``"svamp"``
    name: ClassVar[str]
    #: closed label space, or ``None`` for open answers (SVAMP equations)
    label_space: ClassVar[tuple[str, ...] | None] = None
    #: one line for ``--help`` and ``/v1/model``
    description: ClassVar[str] = ""
    #: text that starts the next few-shot item when a completion runs past its answer
    continuation_markers: ClassVar[tuple[str, ...]] = ("\n\nQ:",)
    #: sentence that introduces the answer in a chain of thought, used to split the rationale
    answer_cue: ClassVar[re.Pattern[str]] = re.compile(r"(?:So )?[Tt]he answer is", re.S)
    #: a system instruction for chat teachers
    teacher_instruction: ClassVar[str] = (
        "Answer the question. Think step by step, then finish with the answer sentence "
        "exactly as in the examples."
    )
    cot_exemplars: ClassVar[tuple[CoTExemplar, ...]] = ()
    self_eval_exemplars: ClassVar[tuple[SelfEvalExemplar, ...]] = ()

    # ----- data -------------------------------------------------------------------------
    def example_from_record(self, record: dict[str, Any], index: int) -> Example:
        """Build an :class:`Example` from one JSONL record.

        The generic layout is ``{"id", "input", "label"}``; tasks override this to also read
        their native fields. ``index`` is the record's position, used when it has no id.
        """
        if "input" not in record:
            raise TaskDataError(f"record has no 'input' field (keys: {sorted(record)})")
        label = record.get("label")
        return Example(
            id=str(record.get("id", index)),
            question=str(record["input"]).strip(),
            label=None if label is None else self.normalize_label(str(label)),
            fields={k: v for k, v in record.items() if k not in ("id", "input", "label")},
        )

    # ----- answers ----------------------------------------------------------------------
    @abstractmethod
    def normalize_label(self, label: str) -> str:
        """Canonical form of a label; raise :class:`TaskDataError` if it cannot be one."""

    @abstractmethod
    def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
        """Read a label from the text after the answer cue (or a bare student answer).

        Returns the normalized label, or ``None`` when the text holds no valid answer.
        """

    def read_label(self, text: str, example: Example | None = None) -> str | None:
        """The label a generated text states, or ``None``: :meth:`parse_label`, with a text the
        task refuses (:class:`TaskDataError`) read as no label. How every stage reads a
        student's (or teacher's) answer, so that none of them fails on one odd output."""
        try:
            return self.parse_label(text, example)
        except TaskDataError:
            return None

    @abstractmethod
    def answer_sentence(self, label: str, example: Example | None = None) -> str:
        """The sentence a chain of thought ends with, e.g. ``The answer is (84 / 2).``"""

    def is_correct(self, prediction: str | None, gold: str | None) -> bool:
        """Whether a predicted label counts as the gold one (normalized string equality)."""
        if prediction is None or gold is None:
            return False
        try:
            return self.normalize_label(prediction) == self.normalize_label(gold)
        except TaskDataError:
            return False

    def answer_value(self, label: str) -> Any:
        """The answer an application wants from a label (SVAMP: the equation's value)."""
        return label

    # ----- rationales -------------------------------------------------------------------
    def check_rationale(
        self, rationale: str, label: str | None, example: Example | None = None
    ) -> RationaleCheck:
        """Whether ``rationale`` supports ``label`` (the normalized label, ``None`` when the
        answer could not be read): the one rule, per task, that ``/v1/explain`` reports. The
        default is :data:`NO_CHECK`."""
        return NO_CHECK

    def calculator(self, text: str) -> str | None:
        """The text to write next when ``text`` (a rationale generated so far) ends with a
        computation waiting for its result, else ``None``. Tasks without arithmetic have none."""
        return None

    @property
    def has_calculator(self) -> bool:
        """Whether this task overrides :meth:`calculator`."""
        return type(self).calculator is not Task.calculator

    # ----- chains of thought ------------------------------------------------------------
    def trim_completion(self, text: str) -> str:
        """Cut a completion where it starts the next few-shot item, and strip it."""
        cut = len(text)
        for marker in self.continuation_markers:
            position = text.find(marker)
            if position != -1:
                cut = min(cut, position)
        return text[:cut].strip()

    def split_cot(self, text: str, example: Example | None = None) -> tuple[str, str | None]:
        """Split a teacher chain of thought into (rationale, label or ``None``).

        The rationale is everything before the last answer cue, as in distilling-step-by-step;
        the label is parsed from what follows it. Without a cue the whole text is the rationale
        and the label is ``None`` (the caller flags it).
        """
        text = self.trim_completion(text)
        matches = list(self.answer_cue.finditer(text))
        if not matches:
            return text, None
        last = matches[-1]
        rationale = text[: last.start()].strip()
        return rationale, self.parse_label(text[last.end() :], example)

    def format_cot(self, rationale: str, label: str, example: Example | None = None) -> str:
        """Inverse of :meth:`split_cot`: a rationale plus its answer sentence."""
        sentence = self.answer_sentence(label, example)
        return f"{rationale.strip()} {sentence}".strip()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "label_space": list(self.label_space) if self.label_space else None,
        }
