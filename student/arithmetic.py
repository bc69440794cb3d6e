"""Safe evaluation of arithmetic answers such as SVAMP's ``( ( 17.0 + 15.0 ) + 2.0 )``.

Teacher and student answers are untrusted text, so they are never handed to ``eval``. This is a
small recursive-descent parser for numbers, ``+ - * /``, unary minus and parentheses; anything
else is a :class:`ArithmeticParseError`. Values are exact :class:`fractions.Fraction` so that
``1/3 + 1/3 + 1/3 == 1`` and comparisons do not depend on float rounding.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "ArithmeticParseError",
    "evaluate",
    "format_number",
    "numbers_equal",
    "try_evaluate",
]

# Thousands separators ("1,200") are common in LLM text; they are stripped before parsing.
_TOKEN = re.compile(r"\s*(?:(\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)|(.))")
_MAX_LENGTH = 512  # longer strings are not answers; refusing them bounds parser work
_MAX_DEPTH = 64


class ArithmeticParseError(ValueError):
    """The text is not a well-formed arithmetic expression (or divides by zero)."""


def _tokenize(text: str) -> list[str]:
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
            # "x" and "×" are multiplication and "÷" division in teacher prose.
            symbol = {"x": "*", "×": "*", "÷": "/", "−": "-"}.get(symbol, symbol)
            if symbol not in "+-*/()":
                raise ArithmeticParseError(f"unexpected character {symbol!r} in {text!r}")
            tokens.append(symbol)
        pos = match.end()
    return tokens


class _Parser:
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

    def parse(self) -> Fraction:
        if not self.tokens:
            raise ArithmeticParseError("empty expression")
        value = self._expression(0)
        if self._peek() is not None:
            raise ArithmeticParseError(
                f"unexpected {self._peek()!r} after a complete expression in {self.source!r}"
            )
        return value

    def _expression(self, depth: int) -> Fraction:
        value = self._term(depth)
        while self._peek() in ("+", "-"):
            op = self._take()
            right = self._term(depth)
            value = value + right if op == "+" else value - right
        return value

    def _term(self, depth: int) -> Fraction:
        value = self._factor(depth)
        while self._peek() in ("*", "/"):
            op = self._take()
            right = self._factor(depth)
            if op == "*":
                value = value * right
            else:
                if right == 0:
                    raise ArithmeticParseError(f"division by zero in {self.source!r}")
                value = value / right
        return value

    def _factor(self, depth: int) -> Fraction:
        if depth > _MAX_DEPTH:
            raise ArithmeticParseError("expression nests too deeply")
        token = self._take()
        if token == "-":
            return -self._factor(depth + 1)
        if token == "+":
            return self._factor(depth + 1)
        if token == "(":
            value = self._expression(depth + 1)
            if self._take() != ")":
                raise ArithmeticParseError(f"missing ')' in {self.source!r}")
            return value
        if token in "*/)":
            raise ArithmeticParseError(f"unexpected {token!r} in {self.source!r}")
        return Fraction(token)


def evaluate(expression: str) -> Fraction:
    """Evaluate an arithmetic expression exactly; raise :class:`ArithmeticParseError` if invalid."""
    if len(expression) > _MAX_LENGTH:
        raise ArithmeticParseError(f"expression longer than {_MAX_LENGTH} characters")
    return _Parser(_tokenize(expression), expression).parse()


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


def format_number(value: Fraction) -> str:
    """Render a value the way people write answers: ``42``, ``2.5``, ``0.333333``."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"
