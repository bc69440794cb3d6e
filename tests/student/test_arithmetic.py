from fractions import Fraction

import pytest
from mindmirror.student.arithmetic import (
    ArithmeticParseError,
    evaluate,
    format_number,
    numbers_equal,
    try_evaluate,
)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("( 84.0 / 2.0 )", Fraction(42)),
        ("( ( 17.0 + 15.0 ) + 2.0 )", Fraction(34)),
        ("10 - (3 + 6)", Fraction(1)),
        ("2 + 3 * 4", Fraction(14)),
        ("(2 + 3) * 4", Fraction(20)),
        ("-3 + 5", Fraction(2)),
        ("1 / 3 + 1 / 3 + 1 / 3", Fraction(1)),
        ("1,200 / 3", Fraction(400)),
        ("5 x 3", Fraction(15)),
        ("84.", Fraction(84)),
        ("0.5 * 3", Fraction(3, 2)),
        ("8 − 3", Fraction(5)),
    ],
)
def test_evaluate_valid(expression: str, value: Fraction) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "(1 + 2",
        "1 + 2)",
        "1 +",
        "__import__('os').system('true')",
        "2 ** 10",
        "1 / 0",
        "3 4",
        "(" * 100 + "1" + ")" * 100,
        "1" + " + 1" * 300,
    ],
)
def test_evaluate_rejects(expression: str) -> None:
    with pytest.raises(ArithmeticParseError):
        evaluate(expression)
    assert try_evaluate(expression) is None


def test_numbers_equal_tolerates_rounded_decimals() -> None:
    assert numbers_equal(evaluate("11 / 3"), Fraction("3.66667"))
    assert not numbers_equal(evaluate("11 / 3"), Fraction("3.7"))
    assert not numbers_equal(None, Fraction(1))


def test_format_number() -> None:
    assert format_number(Fraction(42)) == "42"
    assert format_number(Fraction(5, 2)) == "2.5"
