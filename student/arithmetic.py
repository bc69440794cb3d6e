"""Arithmetic answers such as SVAMP's ``( ( 17.0 + 15.0 ) + 2.0 )``: the one tokenizer and parser.

Teacher and student answers are untrusted text, so they are never handed to ``eval``. This is a
small recursive-descent parser for numbers, ``+ - * /``, unary signs and parentheses; anything
else is an :class:`ArithmeticParseError`. It yields a tree (:class:`Num` and :class:`BinOp`)
that every reader of arithmetic shares: :func:`evaluate` computes its value, SVAMP's canonical
label is written from :func:`tokenize`'s tokens, and the ``arith`` task's generator and the
simulated teacher build and edit the same trees. Values are exact :class:`fractions.Fraction`
so that ``1/3 + 1/3 + 1/3 == 1`` and comparisons do not depend on float rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "ArithmeticParseError",
    "BinOp",
    "Node",
    "Num",
    "evaluate",
    "expression_prefix",
    "format_number",
    "is_number",
    "numbers_equal",
    "parse",
    "step_claims",
    "tokenize",
    "try_evaluate",
    "value",
]

# Thousands separators ("1,200") are common in LLM text; they are stripped from the token.
_NUMBER = r"\d+(?:,\d{3})*(?:\.\d*)?|\.\d+"
_TOKEN = re.compile(rf"\s*(?:({_NUMBER})|(.))")
#: How teacher prose writes the operators: "x" and "×" multiply, "÷" divides, "−" subtracts.
_SYMBOLS = {"x": "*", "×": "*", "÷": "/", "−": "-"}
#: A leading run of the characters an expression is written with (SVAMP answers follow "The
#: answer is"; "84 / 2 = 42." stops at "=").
_EXPRESSION_RUN = re.compile(rf"^\s*:?\s*([-+*/()\d.,\s{''.join(_SYMBOLS)}]+)")
#: A computation step as rationales state it: "12 + 5 = 17".
_STEP_CLAIM = re.compile(r"(-?\d+(?:\.\d+)?) ([-+*/]) (-?\d+(?:\.\d+)?) = (-?\d+(?:\.\d+)?)")
_MAX_LENGTH = 512  # longer strings are not answers; refusing them bounds parser work
_MAX_DEPTH = 64


class ArithmeticParseError(ValueError):
    """The text is not a well-formed arithmetic expression (or divides by zero)."""


# ----- the tree -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Num:
    value: Fraction


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: Node
    right: Node


Node = Num | BinOp


# ----- text -> tokens -> tree ---------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """The tokens of an expression: numbers (separators dropped) and ``+ - * / ( )``."""
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        number, symbol = match.groups()
        if number is not None:
            tokens.append(number.replace(",", ""))
        elif symbol is not None:
            symbol = _SYMBOLS.get(symbol, symbol)
            if symbol not in "+-*/()":
                raise ArithmeticParseError(f"unexpected character {symbol!r} in {text!r}")
            tokens.append(symbol)
        pos = match.end()
    return tokens


def is_number(token: str) -> bool:
    """Whether a :func:`tokenize` token is a number (the others are operators and parentheses)."""
    return token not in "+-*/()"


class _Parser:
    """Operators associate to the left and ``* /`` bind tighter than ``+ -``. A sign before a
    number is part of the number; before anything else a minus is ``0 - x``, so the tree has
    only numbers and binary operations."""

    def __init__(self, tokens: list[str], source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.source = source

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ArithmeticParseError(f"expression ends too early: {self.source!r}")
        self.pos += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise ArithmeticParseError("empty expression")
        node = self._expression(0)
        if self._peek() is not None:
            raise ArithmeticParseError(
                f"unexpected {self._peek()!r} after a complete expression in {self.source!r}"
            )
        return node

    def _expression(self, depth: int) -> Node:
        node = self._term(depth)
        while self._peek() in ("+", "-"):
            op = self._take()
            node = BinOp(op, node, self._term(depth))
        return node

    def _term(self, depth: int) -> Node:
        node = self._factor(depth)
        while self._peek() in ("*", "/"):
            op = self._take()
            node = BinOp(op, node, self._factor(depth))
        return node

    def _factor(self, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            raise ArithmeticParseError("expression nests too deeply")
        token = self._take()
        if token == "-":
            inner = self._factor(depth + 1)
            if isinstance(inner, Num):
                return Num(-inner.value)
            return BinOp("-", Num(Fraction(0)), inner)
        if token == "+":
            return self._factor(depth + 1)
        if token == "(":
            node = self._expression(depth + 1)
            if self._take() != ")":
                raise ArithmeticParseError(f"missing ')' in {self.source!r}")
            return node
        if token in "*/)":
            raise ArithmeticParseError(f"unexpected {token!r} in {self.source!r}")
        return Num(Fraction(token))


def parse(expression: str) -> Node:
    """The tree of an expression; raise :class:`ArithmeticParseError` if it is not one."""
    if len(expression) > _MAX_LENGTH:
        raise ArithmeticParseError(f"expression longer than {_MAX_LENGTH} characters")
    return _Parser(tokenize(expression), expression).parse()


# ----- values -------------------------------------------------------------------------------
def value(node: Node) -> Fraction:
    """The exact value of a tree; division by zero is an :class:`ArithmeticParseError`."""
    if isinstance(node, Num):
        return node.value
    left, right = value(node.left), value(node.right)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        raise ArithmeticParseError("division by zero")
    return left / right


def evaluate(expression: str) -> Fraction:
    """Evaluate an arithmetic expression exactly; raise :class:`ArithmeticParseError` if invalid."""
    tree = parse(expression)
    try:
        return value(tree)
    except ArithmeticParseError as error:
        raise ArithmeticParseError(f"{error} in {expression!r}") from None


def try_evaluate(expression: str | None) -> Fraction | None:
    """Like :func:`evaluate` but return ``None`` for anything that is not a valid expression."""
    if expression is None:
        return None
    try:
        return evaluate(expression)
    except ArithmeticParseError:
        return None


def numbers_equal(a: Fraction | None, b: Fraction | None, tolerance: float = 1e-4) -> bool:
    """Exact equality, or relative closeness for answers written as rounded decimals."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    scale = max(abs(a), abs(b), Fraction(1))
    return abs(a - b) <= Fraction(tolerance) * scale


def format_number(number: Fraction) -> str:
    """Render a value the way people write answers: ``42``, ``2.5``, ``0.333333``."""
    if number.denominator == 1:
        return str(number.numerator)
    return f"{float(number):.6g}"


# ----- arithmetic inside prose --------------------------------------------------------------
def expression_prefix(text: str) -> str | None:
    """The leading run of expression characters of ``text`` (after an optional ``:``), or
    ``None``: the candidate answer in "( 10 + 9 ) - 17" or "84 / 2 = 42."."""
    match = _EXPRESSION_RUN.match(text)
    return match.group(1) if match else None


def step_claims(text: str) -> list[tuple[str, str, str, str]]:
    """The "a op b = c" computation steps a rationale states, as ``(a, op, b, c)`` texts."""
    return _STEP_CLAIM.findall(text)
