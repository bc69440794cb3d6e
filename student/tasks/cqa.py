"""CommonsenseQA: five-way multiple choice; the label is the chosen answer's text.

The question the student reads lists the choices the way distilling-step-by-step formats them
("Answer Choices:\\n(a) ...\\n(b) ..."), so a teacher answer "(d) math problem" can be mapped back
through the letter even when the generic ``{"input", "label"}`` layout is used.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mindmirror.student.tasks.base import (
    CoTExemplar,
    Example,
    RationaleCheck,
    SelfEvalExemplar,
    Task,
    TaskDataError,
    check_choice,
    normalize_text,
)

LETTERS = "abcde"
_CHOICE_LINE = re.compile(r"^\(([a-e])\)\s*(.+?)\s*$", re.M)
_LETTERED_ANSWER = re.compile(r"^\s*:?\s*\(([a-e])\)\s*([^\n.]*)", re.I)


def format_question(question: str, choices: list[str]) -> str:
    lines = [question.strip(), "Answer Choices:"]
    lines += [f"({letter}) {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return "\n".join(lines)


def choices_of(example: Example | None) -> list[str]:
    """The example's choices: from its fields, else read back from the formatted question."""
    if example is None:
        return []
    if example.fields.get("choices"):
        return [str(choice) for choice in example.fields["choices"]]
    return [match.group(2) for match in _CHOICE_LINE.finditer(example.question)]


class CqaTask(Task):
    name = "cqa"
    description = "CommonsenseQA five-way multiple choice; the label is the chosen answer text."
    label_space = None  # the space is per example: its five choices
    answer_cue = re.compile(r"(?:So )?[Tt]he answer is")
    teacher_instruction = (
        "Answer the multiple-choice question. Reason briefly, then end with "
        '"So the answer is (<letter>) <choice>."'
    )
    cot_exemplars: ClassVar[tuple[CoTExemplar, ...]] = (
        CoTExemplar(
            format_question(
                "What do people use to absorb extra ink from a fountain pen?",
                ["shirt pocket", "calligrapher's hand", "inkwell", "desk drawer", "blotter"],
            ),
            "The answer must be an item that can absorb ink. Of the above choices, only "
            "blotters are used to absorb ink. So the answer is (e) blotter.",
        ),
        CoTExemplar(
            format_question(
                "What home entertainment equipment requires cable?",
                ["radio shack", "substation", "television", "cabinet", "desk"],
            ),
            "The answer must require cable. Of the above choices, only television requires "
            "cable. So the answer is (c) television.",
        ),
        CoTExemplar(
            format_question(
                "Where do you put your grapes just before checking out?",
                ["mouth", "grocery cart", "super market", "fruit basket", "fruit market"],
            ),
            "The answer should be the place where grocery items are placed before checking "
            "out. Of the above choices, grocery cart makes the most sense for holding grocery "
            "items. So the answer is (b) grocery cart.",
        ),
    )
    self_eval_exemplars: ClassVar[tuple[SelfEvalExemplar, ...]] = (
        SelfEvalExemplar(
            format_question(
                "The fox walked from the city into the forest, what was it looking for?",
                ["pretty flowers", "hen house", "natural habitat", "storybook", "dense forest"],
            ),
            "The answer must be something in the forest. Of the above choices, only natural "
            "habitat is in the forest. So the answer is (c) natural habitat.",
            "Evaluation:\nA fox leaving the city for the forest is returning to where it "
            "naturally lives; natural habitat fits the question better than the other "
            "choices.\n\nEvaluation result: the given answer is correct.",
        ),
        SelfEvalExemplar(
            format_question(
                "Sammy wanted to go to where the people were. Where might he go?",
                ["race track", "populated areas", "the desert", "apartment", "roadblock"],
            ),
            "The answer must be a place with a lot of people. Of the above choices, only the "
            "desert is a big place. So the answer is (c) the desert.",
            "Evaluation:\nThe question asks for a place where people are. A desert has very "
            "few people; populated areas is the choice that means many people.\n\n"
            "Evaluation result: the given answer is wrong.",
        ),
    )

    def example_from_record(self, record: dict[str, Any], index: int) -> Example:
        if "question" in record and "choices" in record:
            choices = [str(choice) for choice in record["choices"]]
            answer = record.get("answer", record.get("label"))
            return Example(
                id=str(record.get("id", index)),
                question=format_question(str(record["question"]), choices),
                label=None if answer is None else self.normalize_label(str(answer)),
                fields={"choices": choices},
            )
        return super().example_from_record(record, index)

    def normalize_label(self, label: str) -> str:
        normalized = normalize_text(label)
        if not normalized:
            raise TaskDataError("empty CQA label")
        return normalized

    def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
        choices = choices_of(example)
        normalized_choices = [normalize_text(choice) for choice in choices]
        lettered = _LETTERED_ANSWER.match(answer_text)
        text = normalize_text(lettered.group(2) if lettered else answer_text.split("\n")[0])
        # The written choice wins over the letter: LLMs copy the text reliably but sometimes
        # mis-letter it. The letter decides only when the text is missing or not a choice.
        if text and (not choices or text in normalized_choices):
            return text
        if lettered:
            index = LETTERS.index(lettered.group(1).lower())
            if index < len(choices):
                return normalized_choices[index]
        if not text:
            return None
        # A student or teacher may write the choice inside a longer phrase.
        contained = [choice for choice in normalized_choices if choice and choice in text]
        return max(contained, key=len) if contained else None

    def answer_sentence(self, label: str, example: Example | None = None) -> str:
        choices = [normalize_text(choice) for choice in choices_of(example)]
        if label in choices:
            return f"So the answer is ({LETTERS[choices.index(label)]}) {label}."
        return f"So the answer is {label}."

    def check_rationale(
        self, rationale: str, label: str | None, example: Example | None = None
    ) -> RationaleCheck:
        """A rationale supports a label when the choice it settles on
        (:func:`~mindmirror.student.tasks.base.check_choice`) is the label. One that names no
        choice is not checked (``None``): about one PaLM rationale in ten paraphrases its
        choice ("only wrestling requires a weight cut" for "wrestle")."""
        return check_choice(rationale, label, [normalize_text(c) for c in choices_of(example)])
