"""ANLI: natural language inference, entailment / neutral / contradiction.

The native layout (as in the distilling-step-by-step release) has ``premise``, ``hypothesis``
and an integer ``label`` in the Hugging Face ``anli`` order: 0 entailment, 1 neutral,
2 contradiction.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mindmirror.student.tasks.base import (
    CoTExemplar,
    Example,
    SelfEvalExemplar,
    Task,
    TaskDataError,
    normalize_text,
)

LABELS = ("entailment", "neutral", "contradiction")
_SYNONYMS = {
    "entails": "entailment",
    "entailed": "entailment",
    "yes": "entailment",
    "true": "entailment",
    "it is not possible to tell": "neutral",
    "not possible to tell": "neutral",
    "unknown": "neutral",
    "contradicts": "contradiction",
    "contradicted": "contradiction",
    "no": "contradiction",
    "false": "contradiction",
}


def format_question(premise: str, hypothesis: str) -> str:
    return f"Premise: {premise.strip()}\nHypothesis: {hypothesis.strip()}"


class AnliTask(Task):
    name = "anli"
    description = "ANLI natural language inference: entailment, neutral or contradiction."
    label_space = LABELS
    continuation_markers = ("\n\nPremise:", "\n\nQ:")
    answer_cue = re.compile(r"(?:So )?[Tt]he answer is")
    teacher_instruction = (
        "Decide whether the premise entails the hypothesis, contradicts it, or neither "
        '(neutral). Reason briefly, then end with "So the answer is <entailment|neutral|'
        'contradiction>."'
    )
    cot_exemplars: ClassVar[tuple[CoTExemplar, ...]] = (
        CoTExemplar(
            format_question(
                "Conceptually cream skimming has two basic dimensions - product and geography.",
                "Product and geography are what make cream skimming work.",
            ),
            "The premise says product and geography are dimensions of cream skimming, not that "
            "they make it work. So the answer is neutral.",
        ),
        CoTExemplar(
            format_question(
                "The Parma trolleybus system has been operating since 1953 and has 4 urban routes.",
                "The trolleybus system has over 2 urban routes.",
            ),
            "The premise says the system has 4 urban routes, and 4 is more than 2. "
            "So the answer is entailment.",
        ),
        CoTExemplar(
            format_question(
                "Gregory Roger Smith is a former English cricketer who played for Derbyshire "
                "between 1968 and 1971.",
                "Gregory Smith played cricket for Yorkshire.",
            ),
            "The premise says he played for Derbyshire, while the hypothesis names Yorkshire "
            "instead. So the answer is contradiction.",
        ),
    )
    self_eval_exemplars: ClassVar[tuple[SelfEvalExemplar, ...]] = (
        SelfEvalExemplar(
            format_question(
                "Idris Sultan (born January 1990) is a Tanzanian actor and comedian.",
                "Sultan was born in the 1990s.",
            ),
            "The premise says Idris Sultan was born in January 1990, which is in the 1990s. "
            "So the answer is entailment.",
            "Evaluation:\nJanuary 1990 falls within the 1990s, so the hypothesis follows from "
            "the premise.\n\nEvaluation result: the given answer is correct.",
        ),
        SelfEvalExemplar(
            format_question(
                "The Ghost Ship is a 1943 American psychological thriller film.",
                "The Ghost Ship was a box office success.",
            ),
            "The premise says it is a thriller film, and thrillers are popular. "
            "So the answer is entailment.",
            "Evaluation:\nThe premise says nothing about how the film performed at the box "
            "office; popularity of a genre does not settle it. The right answer is neutral.\n\n"
            "Evaluation result: the given answer is wrong.",
        ),
    )

    def example_from_record(self, record: dict[str, Any], index: int) -> Example:
        if "premise" in record and "hypothesis" in record:
            label = record.get("label")
            return Example(
                id=str(record.get("uid", record.get("id", index))),
                question=format_question(str(record["premise"]), str(record["hypothesis"])),
                label=None if label is None else self.normalize_label(str(label)),
                fields={"reason": record["reason"]} if record.get("reason") else {},
            )
        return super().example_from_record(record, index)

    def normalize_label(self, label: str) -> str:
        text = normalize_text(label)
        if text in ("0", "1", "2"):
            return LABELS[int(text)]
        text = _SYNONYMS.get(text, text)
        if text not in LABELS:
            raise TaskDataError(f"ANLI label must be one of {', '.join(LABELS)} or 0-2: {label!r}")
        return text

    def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
        text = normalize_text(answer_text.split("\n")[0])
        try:
            return self.normalize_label(text)
        except TaskDataError:
            # "contradiction, because ..." or "neutral since ..." -> the first label word.
            found = re.search(r"\b(" + "|".join(LABELS) + r")\b", text)
            return found.group(1) if found else None

    def answer_sentence(self, label: str, example: Example | None = None) -> str:
        return f"So the answer is {label}."

    # No check_rationale (Task's NO_CHECK): PaLM's ANLI rationales restate the premise and leave
    # the relation to the answer sentence; 962 of the 1,000 test rationales name no relation at
    # all, so a rationale has no stated relation to hold its answer against.
