from fractions import Fraction

import pytest
from mindmirror.student.arithmetic import (
    ArithmeticParseError,
    BinOp,
    Num,
    evaluate,
    expression_prefix,
    format_number,
    is_number,
    numbers_equal,
    parse,
    step_claims,
    tokenize,
    try_evaluate,
    value,
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


# ----- the tree every reader of arithmetic shares -------------------------------------------
def test_parse_builds_the_tree_evaluate_computes() -> None:
    assert parse("2 + 3 * 4") == BinOp(
        "+", Num(Fraction(2)), BinOp("*", Num(Fraction(3)), Num(Fraction(4)))
    )
    assert parse("10 - 4 - 3") == BinOp(
        "-", BinOp("-", Num(Fraction(10)), Num(Fraction(4))), Num(Fraction(3))
    )
    # A sign before a number belongs to the number; before a group, a minus is 0 - the group.
    assert parse("-3 + +5") == BinOp("+", Num(Fraction(-3)), Num(Fraction(5)))
    assert parse("-(2 + 3)") == BinOp(
        "-", Num(Fraction(0)), BinOp("+", Num(Fraction(2)), Num(Fraction(3)))
    )
    for text in ("( 84.0 / 2.0 )", "1 / 3 + 1 / 3 + 1 / 3", "-(2 + 3) * 4", "8 − 3 x 2"):
        assert value(parse(text)) == evaluate(text)


def test_value_refuses_division_by_zero() -> None:
    tree = parse("1 / (2 - 2)")  # well-formed: the parser does not compute
    with pytest.raises(ArithmeticParseError, match="division by zero"):
        value(tree)


def test_tokens_spell_operators_one_way() -> None:
    assert tokenize("1,200 x 3 ÷ (2 − .5)") == ["1200", "*", "3", "/", "(", "2", "-", ".5", ")"]
    assert [t for t in tokenize("( 84. / 2 )") if is_number(t)] == ["84.", "2"]
    with pytest.raises(ArithmeticParseError, match="unexpected character"):
        tokenize("2 ** x ^ 3")


def test_expressions_and_step_claims_in_prose() -> None:
    assert expression_prefix(": (84 / 2) = 42 cookies.") == "(84 / 2) "
    assert expression_prefix("8 − 3.") == "8 − 3."
    assert expression_prefix("forty-two") is None
    assert step_claims("First, 12 + 5 = 17. Then 17 / 2 = 8.5 apples.") == [
        ("12", "+", "5", "17"),
        ("17", "/", "2", "8.5"),
    ]
