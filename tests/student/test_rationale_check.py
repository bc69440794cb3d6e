"""Whether a rationale supports its answer (``Task.check_rationale``) and the calculator that
writes a step's result (``Task.calculator``), with the arithmetic readers under them."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from mindmirror.student.arithmetic import (
    evaluate,
    last_number,
    pending_step,
    stated_steps,
    written_as,
)
from mindmirror.student.tasks import get_task
from mindmirror.student.tasks.base import NO_CHECK, Example, RationaleCheck, stated_choice
from mindmirror.student.tasks.cqa import format_question
from mindmirror.student.tasks.spec import SpecTask, TaskSpec

svamp = get_task("svamp")
arith = get_task("arith")


# ----- steps in prose ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("So he had 30 - 28 = 2 bottle caps.", [("30 - 28", "2", True)]),
        (
            "First, 12 + 5 = 17. Then 17 / 2 = 8.5 apples.",
            [("12 + 5", "17", True), ("17 / 2", "8.5", True)],
        ),
        ("She played with 17 + 15 + 2 = 34 kids.", [("17 + 15 + 2", "34", True)]),
        ("So 51 - (-11) = 62 more.", [("51 - (-11)", "62", True)]),
        ("So 79 - (24 + 51) = 5 animals.", [("79 - (24 + 51)", "5", False)]),
        ("He earns $460 / 5 = $92 a week.", [("$460 / 5", "92", True)]),
        ("Then 1,200 + 5 = 1,205 pens.", [("1,200 + 5", "1205", True)]),
        ("So 10 − 15 = −5.", [("10 − 15", "-5", True)]),
        ("It costs 99 x 3 = 297 dollars.", [("99 x 3", "297", True)]),
        ("He gave 29/2 = 14 crackers.", [("29/2", "14", False)]),
        # A chain states two equalities; the first compares expressions by value.
        (
            "She cut 17 + (-18) = 17 - 18 = -1 roses.",
            [("17 + (-18)", "17 - 18", True), ("17 - 18", "-1", True)],
        ),
        # "1,200" is not read as "200"; "3, 72" is two numbers.
        ("So 18 / 6 = 3, 72 / 6 = 12.", [("18 / 6", "3", True), ("72 / 6", "12", True)]),
        # Algebra is no computation: "x" multiplies only between spaces.
        ("16 * x = 1216. So x = 1216 / 16. 2x + 4 = 14.", []),
        ("So x = 116 - 71 - 38 = 7.", [("116 - 71 - 38", "7", True)]),
        ("In the box 3 + 4 = 8 cards.", [("3 + 4", "8", False)]),
        ("So 5 / 0 = 0.", [("5 / 0", "0", False)]),
        ("a == b and 3 <= 4", []),
    ],
)
def test_stated_steps_read_the_forms_rationales_use(
    text: str, steps: list[tuple[str, str, bool]]
) -> None:
    assert [(s.left, s.result, s.correct) for s in stated_steps(text)] == steps


def test_written_as_accepts_the_teachers_rounding_and_nothing_looser() -> None:
    third = Fraction(10, 3)
    for right in ("3.33", "3.3", "3.33333"):
        assert written_as(third, right)
    for wrong in ("3.4", "3", "3.34"):
        assert not written_as(third, wrong)
    assert written_as(Fraction(2, 3), "0.67")
    assert written_as(Fraction(2, 3), "0.66")  # cut, not rounded
    assert written_as(Fraction(-7), "-7")
    assert not written_as(Fraction(-7), "7")
    # format_number keeps six significant digits: a large value loses its decimals.
    assert written_as(Fraction(1234567, 10), "123457")
    assert not written_as(Fraction(19), "nineteen")


def test_last_number() -> None:
    assert last_number("He had 4 apples and -5 degrees.") == "-5"
    assert last_number("There were 1,200 people, then $7.50 each") == "7.50"
    assert last_number("pages 10-12 of chapter2") == "12"
    assert last_number("no numbers here") is None


# ----- svamp / arith check ----------------------------------------------------------------------
def check(rationale: str, label: str | None) -> RationaleCheck:
    return svamp.check_rationale(rationale, label)


def test_a_right_chain_that_concludes_the_answer_is_consistent() -> None:
    rationale = "First, 30 - 12 = 18 stickers are left. Then 18 + 5 = 23 stickers."
    assert arith.check_rationale(rationale, "( 30 - 12 ) + 5") == RationaleCheck(True, 2, 2, "23")
    # The equation is judged by value: another spelling of the same answer is supported.
    assert check(rationale, "5 + 30 - 12").consistent is True


def test_a_wrong_step_makes_it_inconsistent_and_says_which() -> None:
    result = check("Tom had 10 and got 9 more, so 10 + 9 = 49.", "10 + 9")
    assert result == RationaleCheck(False, 1, 0, "49", "10 + 9 = 49 is wrong: 10 + 9 is 19")
    # A right conclusion does not excuse a wrong step on the way.
    chained = check("So 6 * 7 = 40. Then 40 + 4 = 44.", "6 * 7 + 2")
    assert (chained.consistent, chained.steps, chained.steps_right) == (False, 2, 1)
    assert chained.reason == "6 * 7 = 40 is wrong: 6 * 7 is 42"


def test_a_conclusion_that_is_not_the_answer_is_inconsistent() -> None:
    result = check("First, 17 + 19 = 36 shells. Then 36 - 4 = 32 shells.", "( 17 + 19 ) / 4")
    assert result == RationaleCheck(False, 2, 2, "32", "concludes 32, the answer is 9")


def test_rounded_unicode_and_signed_results() -> None:
    assert check("Each gets 10 / 3 = 3.33 pies.", "10 / 3").consistent is True
    assert check("Each gets 10 / 3 = 3.4 pies.", "10 / 3").consistent is False
    assert check("So 10 − 15 = −5 degrees.", "10 - 15").consistent is True
    assert check("So 10 − 15 = 5 degrees.", "10 - 15").reason == (
        "10 − 15 = 5 is wrong: 10 − 15 is -5"
    )


def test_without_steps_the_last_number_concludes() -> None:
    assert check("Luke scored 84 points in 2 rounds, so 42 per round.", "84 / 2") == (
        RationaleCheck(True, 0, 0, "42")
    )
    assert check("Luke scored 84 points in 2 rounds.", "84 / 2").consistent is False
    assert check("He has some left.", "84 / 2") == RationaleCheck(False, reason="states no result")


def test_an_unreadable_answer_is_never_supported() -> None:
    assert check("So 2 + 2 = 4.", None) == RationaleCheck(
        False, 1, 1, "4", "the answer is not an equation"
    )


# ----- the calculator ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "forced"),
    [
        ("Tom had 10 and got 9, so 10 + 9 =", " 19"),
        ("Tom had 10 and got 9, so 10 + 9 = ", "19"),
        ("First, ( 17 + 15 ) + 2 =", " 34"),
        ("So 3 - 10 =", " -7"),
        ("Each gets 10 / 3 =", " 3.33333"),
        ("Then 1,200 × 2 =", " 2400"),
        ("She cut 17 + (-18) = 17 - 18 =", " -1"),
        ("So 5 / 0 =", None),  # the model writes what it writes
        ("So x =", None),
        ("So 16 * x =", None),
        ("So 10 + 9 = 19", None),
        ("So 10 + 9", None),
        ("So 1234567.5 + 1 =", None),  # format_number would need an exponent
        ("", None),
    ],
)
def test_calculator_writes_a_pending_steps_result(text: str, forced: str | None) -> None:
    assert svamp.calculator(text) == forced
    assert arith.calculator(text) == forced


def test_what_the_calculator_writes_the_check_accepts() -> None:
    for expression in ("10 / 3", "17 + 15 + 2", "3 - 10", "7 * 0.5", "2 / 3", "1000000 / 7"):
        text = f"So {expression} ="
        rationale = text + svamp.calculator(text)
        assert check(rationale, expression).consistent is True, rationale
    assert pending_step("So 7 * 6 = ") == evaluate("7 * 6")


def test_only_arithmetic_tasks_have_a_calculator() -> None:
    assert svamp.has_calculator
    assert arith.has_calculator
    for name in ("cqa", "anli"):
        task = get_task(name)
        assert not task.has_calculator
        assert task.calculator("So 10 + 9 =") is None


# ----- choices --------------------------------------------------------------------------------
CHOICES = ["shirt pocket", "inkwell", "desk drawer", "blotter", "market", "super market"]
CQA_EXAMPLE = Example("q", format_question("What absorbs ink?", CHOICES[:5]))
cqa = get_task("cqa")


def test_stated_choice_is_the_first_named_in_the_last_sentence_naming_one() -> None:
    assert stated_choice("Of the above choices, only blotters absorb ink.", CHOICES) == "blotter"
    # Later in the same sentence the rationale names what it set aside.
    assert (
        stated_choice(
            "Ink is kept in an inkwell. Only a blotter absorbs ink from an inkwell.", CHOICES
        )
        == "blotter"
    )
    assert stated_choice("You buy it at the super market.", CHOICES) == "super market"
    assert stated_choice("A pocketknife is no pocket.", ["pocket"]) == "pocket"
    assert stated_choice("A blotterish thing.", ["otter"]) is None


def test_cqa_check() -> None:
    supports = "The answer must absorb ink. Of the above choices, only blotters absorb ink."
    assert cqa.check_rationale(supports, "blotter", CQA_EXAMPLE) == RationaleCheck(
        True, stated="blotter"
    )
    assert cqa.check_rationale(supports, "inkwell", CQA_EXAMPLE) == RationaleCheck(
        False, stated="blotter", reason="settles on 'blotter', not 'inkwell'"
    )
    assert cqa.check_rationale(supports, None, CQA_EXAMPLE).consistent is False
    paraphrase = cqa.check_rationale("Only paper that soaks ink up.", "blotter", CQA_EXAMPLE)
    assert paraphrase == RationaleCheck(None, reason="names none of the choices")
    assert cqa.check_rationale(supports, "blotter").consistent is None  # no choices known


def test_anli_and_free_text_specs_have_no_check_and_classification_specs_do() -> None:
    anli = get_task("anli")
    assert (
        anli.check_rationale("The premise says so. It is an entailment.", "entailment") is NO_CHECK
    )
    free = SpecTask(TaskSpec(name="qa"))
    assert free.check_rationale("It is Paris.", "paris") is NO_CHECK
    sentiment = SpecTask(TaskSpec(name="sentiment", labels=["positive", "negative"]))
    assert sentiment.check_rationale("The review is negative.", "negative").consistent is True
    assert sentiment.check_rationale("The review is negative.", "positive").consistent is False
    assert sentiment.check_rationale("The review praises it.", "positive").consistent is None


# ----- real teacher rationales ------------------------------------------------------------------
def _svamp_cots(shared_data: Path) -> list[str]:
    folder = shared_data / "distilling-step-by-step/datasets/svamp/llm"
    return [
        text
        for name in ("train_CoT_0.json", "train_CoT_1.json", "test_CoT_0.json")
        for text in json.loads((folder / name).read_text(encoding="utf-8"))
    ]


def test_palm_svamp_rationales(shared_data: Path) -> None:
    """PaLM's 1,000 SVAMP chains: the reader finds their steps (1,207, of which 45 wrong; the
    wrong ones read by hand were real slips such as "58 - 62 = 6") and most chains support the
    teacher's answer (84%)."""
    steps = right = consistent = 0
    for text in _svamp_cots(shared_data):
        rationale, label = svamp.split_cot(text)
        result = svamp.check_rationale(rationale, label)
        steps, right = steps + result.steps, right + result.steps_right
        consistent += bool(result.consistent)
    assert steps >= 1200
    assert right / steps > 0.95
    assert 0.8 < consistent / 1000 < 0.9
    real = (
        "The grasshopper jumped 25 inches. The frog jumped 32 inches farther than the "
        "grasshopper. So the frog jumped 25 + 32 = 57 inches. The mouse jumped 26 inches lesser "
        "than the frog. So the mouse jumped 57 - 26 = 31 inches."
    )
    assert svamp.check_rationale(real, "( 25 + 32 ) - 26") == RationaleCheck(True, 2, 2, "31")
    slip = "There are 4502 skittles and 4276 erasers. 4502 + 4276 = 8778. 8778 / 154 = 56.8."
    assert svamp.check_rationale(slip, "( 4502 + 4276 ) / 154").reason == (
        "8778 / 154 = 56.8 is wrong: 8778 / 154 is 57"
    )


def test_palm_cqa_rationales_name_the_teachers_choice(shared_data: Path) -> None:
    folder = shared_data / "distilling-step-by-step/datasets/cqa"
    lines = (folder / "cqa_test.json").read_text(encoding="utf-8").splitlines()
    examples = [cqa.example_from_record(json.loads(line), i) for i, line in enumerate(lines)]
    texts = json.loads((folder / "llm/test_CoT_0.json").read_text(encoding="utf-8"))
    counts = {True: 0, False: 0, None: 0}
    for example, text in zip(examples, texts, strict=False):
        rationale, label = cqa.split_cot(text, example)
        if label is not None:
            counts[cqa.check_rationale(rationale, label, example).consistent] += 1
    # Measured: 884 consistent, 12 not, 104 name no choice.
    assert counts[True] > 850
    assert counts[False] < 25
