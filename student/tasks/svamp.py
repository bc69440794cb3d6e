"""SVAMP: arithmetic word problems whose answer is an equation.

Labels are equations such as ``( 84.0 / 2.0 )``. They are judged by value, evaluated with the
safe parser in :mod:`mindmirror.student.arithmetic`, never with ``eval``. The canonical form of an
equation (what the student is trained to emit) drops ``.0`` and redundant outer parentheses, so
the human label ``( 84.0 / 2.0 )`` and the teacher's ``(84 / 2)`` become the same target
``84 / 2``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, ClassVar

from mindmirror.student.arithmetic import (
    ArithmeticParseError,
    evaluate,
    expression_prefix,
    format_number,
    is_number,
    last_number,
    numbers_equal,
    pending_step,
    stated_steps,
    tokenize,
    try_evaluate,
    written_as,
)
from mindmirror.student.tasks.base import (
    CoTExemplar,
    Example,
    RationaleCheck,
    SelfEvalExemplar,
    Task,
    TaskDataError,
)

# "(84 / 2)." or "84 / 2 = 42." after the cue: take the first parenthesized group if present.
_PARENTHESIZED = re.compile(r"^\s*:?\s*(\(.*\))")


def canonical_equation(text: str) -> str:
    """Normalize an equation's spelling; raise :class:`TaskDataError` if it is not one.

    The tokens are the arithmetic parser's; numbers are written as :func:`format_number` writes
    them and parentheses around the whole equation are dropped (the inner ones are kept: they
    are how the teacher grouped the steps).
    """
    try:
        evaluate(text)
    except ArithmeticParseError as error:
        raise TaskDataError(f"not an arithmetic equation: {text!r} ({error})") from None
    tokens = [format_number(Fraction(t)) if is_number(t) else t for t in tokenize(text)]
    while len(tokens) >= 2 and tokens[0] == "(" and _closing(tokens) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return " ".join(tokens)


def _closing(symbols: str | list[str]) -> int | None:
    """Where the '(' that ``symbols`` starts with is closed (characters or tokens), or None."""
    depth = 0
    for position, symbol in enumerate(symbols):
        depth += symbol == "("
        depth -= symbol == ")"
        if depth == 0:
            return position
    return None


class SvampTask(Task):
    name = "svamp"
    description = "SVAMP arithmetic word problems; the answer is an equation judged by its value."
    label_space = None
    continuation_markers = ("\n\nQ:", "\nQ:")
    answer_cue = re.compile(r"[Tt]he answer is")
    teacher_instruction = (
        "Solve the math word problem. Reason step by step, then end with "
        '"The answer is (<equation>)." where <equation> uses only the numbers from the problem '
        "and + - * / with parentheses."
    )
    cot_exemplars: ClassVar[tuple[CoTExemplar, ...]] = (
        CoTExemplar(
            "There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
            "After they are done, there will be 21 trees.\nHow many trees did the grove workers "
            "plant today?",
            "There are 15 trees originally. Then there were 21 trees after some more were "
            "planted. So there must have been 21 - 15 = 6. The answer is (21 - 15).",
        ),
        CoTExemplar(
            "Leah had 32 chocolates and her sister had 42. If they ate 35\nHow many pieces do "
            "they have left in total?",
            "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had "
            "32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is ((32 + 42) - 35).",
        ),
        CoTExemplar(
            "Olivia has $ 23. She bought five bagels for $ 3 each.\nHow much money does she have "
            "left?",
            "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 * 3 = 15 dollars. So "
            "she has 23 - 15 = 8 dollars left. The answer is (23 - (5 * 3)).",
        ),
        CoTExemplar(
            "A baker made 48 cakes and packed them equally into 6 boxes.\nHow many cakes are in "
            "each box?",
            "The baker packed 48 cakes into 6 equal boxes. So each box has 48 / 6 = 8 cakes. "
            "The answer is (48 / 6).",
        ),
    )
    self_eval_exemplars: ClassVar[tuple[SelfEvalExemplar, ...]] = (
        SelfEvalExemplar(
            "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops.\n"
            "How many lollipops did Jason give to Denny?",
            "Jason started with 20 lollipops and has 12 left, so he gave away 20 - 12 = 8. "
            "The answer is (20 - 12).",
            "Evaluation:\nThe question asks how many lollipops Jason gave away. The difference "
            "between what he had (20) and what he has now (12) is what he gave away, and "
            "20 - 12 = 8 is computed correctly.\n\n"
            "Evaluation result: the given answer is correct.",
        ),
        SelfEvalExemplar(
            "Shawn has five toys. For Christmas, he got two toys each from his mom and dad.\n"
            "How many toys does he have now?",
            "Shawn has 5 toys. He got 2 toys from his mom and dad. So he has 5 + 2 = 7 toys. "
            "The answer is (5 + 2).",
            "Evaluation:\nShawn got two toys from each parent, which is 2 * 2 = 4 new toys, not "
            "2. The answer drops one of the gifts, so the total should be 5 + (2 * 2) = 9.\n\n"
            "Evaluation result: the given answer is wrong.",
        ),
        SelfEvalExemplar(
            "A shelf holds 36 books. Some books were taken away and 14 were added.\n"
            "How many books are on the shelf now?",
            "The shelf had 36 books and 14 were added, so there are 36 + 14 = 50 books. "
            "The answer is (36 + 14).",
            "Evaluation:\nThe answer adds the 14 new books, but the problem also says some "
            "books were taken away without saying how many, so the final count cannot be "
            "determined from the information given.\n\n"
            "Evaluation result: the given answer is uncertain.",
        ),
    )

    def example_from_record(self, record: dict[str, Any], index: int) -> Example:
        # The original SVAMP.json layout: Body, Question, Equation.
        if "Body" in record and "Question" in record:
            body = str(record["Body"]).strip()
            question = f"{body}\n{str(record['Question']).strip()}"
            record = {
                "id": record.get("ID", index),
                "input": question,
                "label": record.get("Equation"),
            }
        return super().example_from_record(record, index)

    def normalize_label(self, label: str) -> str:
        return canonical_equation(label)

    def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
        text = answer_text.strip()
        candidates = []
        bare = expression_prefix(text)
        if bare:
            # The whole run of equation characters first: "( 10 + 9 ) - 17" (a canonical label,
            # as a student emits it) must not be cut to its first group. "84 / 2 = 42." keeps
            # only the part before "=" (the run stops at "=").
            candidates.append(bare.strip().rstrip("."))
        match = _PARENTHESIZED.match(text)
        if match:
            # "(21 - 15). 6 stamps": the bare run does not parse, its first group does.
            group = match.group(1)
            closing = _closing(group)
            candidates.append(group if closing is None else group[: closing + 1])
        for candidate in candidates:
            if candidate and try_evaluate(candidate) is not None:
                return canonical_equation(candidate)
        return None

    def answer_sentence(self, label: str, example: Example | None = None) -> str:
        return f"The answer is ({label})."

    def is_correct(self, prediction: str | None, gold: str | None) -> bool:
        return numbers_equal(try_evaluate(prediction), try_evaluate(gold))

    def answer_value(self, label: str) -> float | None:
        value = try_evaluate(label)
        return None if value is None else float(value)

    def check_rationale(
        self, rationale: str, label: str | None, example: Example | None = None
    ) -> RationaleCheck:
        """A rationale supports an equation when every step it states ("a op b = c",
        :func:`~mindmirror.student.arithmetic.stated_steps`) is right and what it concludes
        equals the equation's value. It concludes the last step's result, or without a step the
        last number it states; both are compared as
        :func:`~mindmirror.student.arithmetic.written_as` reads a written number ("10 / 3 =
        3.33" is right), an expression result by value."""
        steps = stated_steps(rationale)
        if steps:
            stated, number, concluded = steps[-1].result, steps[-1].number, steps[-1].stated
        else:
            stated, number = last_number(rationale), True
            if stated is None:
                return RationaleCheck(False, reason="states no result")
            concluded = Fraction(stated)
        right = sum(step.correct for step in steps)
        wrong = next((step for step in steps if not step.correct), None)
        answer = try_evaluate(label)
        reason = ""
        if wrong is not None:
            truth = (
                "divides by zero"
                if wrong.computed is None
                else f"is {format_number(wrong.computed)}"
            )
            reason = f"{wrong.left} = {wrong.result} is wrong: {wrong.left} {truth}"
        elif answer is None:
            reason = "the answer is not an equation"
        elif not (written_as(answer, stated) if number else numbers_equal(answer, concluded)):
            reason = f"concludes {stated}, the answer is {format_number(answer)}"
        return RationaleCheck(not reason, len(steps), right, stated, reason)

    def calculator(self, text: str) -> str | None:
        """The result of the computation ``text`` ends with ("... 10 + 9 =" gives " 19"),
        written as the teacher writes results (:func:`~mindmirror.student.arithmetic.
        format_number`), so that it is what :meth:`check_rationale` accepts. ``None`` when the
        text does not end with a computation, it divides by zero, or its result would need an
        exponent ("1.23457e+06"): the model then writes what it writes."""
        result = pending_step(text)
        if result is None:
            return None
        written = format_number(result)
        if "e" in written:
            return None
        return written if text.endswith(" ") else f" {written}"
