"""The student's input formats, shared by training, export checks and the service.

The student is one T5 trained multi-task with prefixes: ``predict:`` asks for a label,
``explain:`` for a rationale. Stage 1 (self-evaluation) and stage 2 (chain of thought) use the
same prefixes; a self-evaluation input carries the question *and* the reasoning to judge,
marked ``evaluate:`` so the student can tell the two kinds of input apart (they share one set of
weights after stage 2). Changing any string here changes what a trained student understands,
so the bundle manifest records the prefixes it was trained with and readers use those.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "DEFAULT_PREFIXES",
    "Prefixes",
    "Verdict",
    "parse_self_evaluation",
    "read_verdict",
    "verdict_sentence",
]

Mode = Literal["predict", "explain"]


class Verdict(StrEnum):
    """A self-evaluation verdict, as in the Mind's Mirror prompts."""

    CORRECT = "correct"
    WRONG = "wrong"
    UNCERTAIN = "uncertain"


class Prefixes(BaseModel):
    """The task prefixes a student was trained with (stored in the bundle manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    predict: str = "predict: "
    explain: str = "explain: "
    evaluate: str = "evaluate: "
    reasoning: str = "\nreasoning: "

    def cot_input(self, question: str, mode: Mode) -> str:
        """Stage-2 input: the question alone."""
        return f"{self._mode(mode)}{question.strip()}"

    def self_eval_input(self, question: str, reasoning: str, mode: Mode) -> str:
        """Stage-1 input: the question together with one chain of thought to judge."""
        body = f"{question.strip()}{self.reasoning}{reasoning.strip()}"
        return f"{self._mode(mode)}{self.evaluate}{body}"

    def _mode(self, mode: Mode) -> str:
        if mode == "predict":
            return self.predict
        if mode == "explain":
            return self.explain
        raise ValueError(f"mode must be 'predict' or 'explain', not {mode!r}")


DEFAULT_PREFIXES = Prefixes()

_VERDICT = re.compile(
    r"Evaluation result\s*:?\s*(?:the given answer is\s*)?\**\s*"
    r"(correct|wrong|incorrect|uncertain)\b",
    re.I,
)
_EVALUATION_HEADER = re.compile(r"^\s*Evaluation\s*:\s*", re.I)


def parse_self_evaluation(text: str) -> tuple[str, Verdict | None]:
    """Split a self-evaluation into (rationale, verdict or ``None`` when there is none).

    Teacher outputs end with "Evaluation result: the given answer is correct|wrong|uncertain.";
    the rationale is what comes before that line, without the leading "Evaluation:" header.
    When several result lines appear, the last one counts (models sometimes restate).
    """
    matches = list(_VERDICT.finditer(text))
    if not matches:
        return _EVALUATION_HEADER.sub("", text.strip()).strip(), None
    last = matches[-1]
    word = last.group(1).lower()
    verdict = Verdict.WRONG if word == "incorrect" else Verdict(word)
    rationale = _EVALUATION_HEADER.sub("", text[: last.start()].strip()).strip()
    return rationale, verdict


def read_verdict(text: str) -> Verdict | None:
    """The verdict a text states, or ``None``: the one reader of verdicts for every stage.

    A student's ``predict:`` output on a self-evaluation input is the bare word (``correct``,
    ``wrong``, ``uncertain``; ``incorrect`` reads as wrong; case and a final period do not
    matter). Anything else is read as a self-evaluation, through its "Evaluation result" line
    (:func:`parse_self_evaluation`).
    """
    word = text.strip().rstrip(".").strip().lower()
    if word == "incorrect":
        return Verdict.WRONG
    if word in {verdict.value for verdict in Verdict}:
        return Verdict(word)
    return parse_self_evaluation(text)[1]


def verdict_sentence(verdict: Verdict | str) -> str:
    """The sentence a self-evaluation ends with."""
    return f"Evaluation result: the given answer is {Verdict(verdict).value}."
