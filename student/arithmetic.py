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

import math
import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "ArithmeticParseError",
    "BinOp",
    "Node",
    "Num",
    "StatedStep",
    "evaluate",
    "expression_prefix",
    "format_number",
    "is_number",
    "last_number",
    "numbers_equal",
    "parse",
    "pending_step",
    "stated_steps",
    "step_claims",
    "tokenize",
    "try_evaluate",
    "value",
    "written_as",
]

# Thousands separators ("1,200") are common in LLM text; they are stripped from the token.
_NUMBER = r"\d+(?:,\d{3})*(?:\.\d*)?|\.\d+"
_TOKEN = re.compile(rf"\s*(?:({_NUMBER})|(.))")
#: How teacher prose writes the operators: "x" and "×" multiply, "÷" divides, "−" subtracts.
_SYMBOLS = {"x": "*", "×": "*", "÷": "/", "−": "-"}
#: A leading run of the characters an expression is written with (SVAMP answers follow "The
#: answer is"; "84 / 2 = 42." stops at "=").
_EXPRESSION_RUN = re.compile(rf"^\s*:?\s*([-+*/()\d.,\s{''.join(_SYMBOLS)}]+)")
#: A computation step as the simulated teacher states it: "12 + 5 = 17" (see step_claims).
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
    """The "a op b = c" steps of the simulated teacher's wording, as ``(a, op, b, c)`` texts.

    The simulated grader quotes these; any other reader of rationales (LLM or student text, with
    chains, signs, separators and "$") uses :func:`stated_steps`."""
    return _STEP_CLAIM.findall(text)


# ----- computation steps inside prose -------------------------------------------------------
# A step is "left = right" where the left side is an expression with an operator and the right
# side a number or an expression, both written with this module's tokens. Real PaLM SVAMP
# rationales write "12 - 7 = 5", chains "17 + 15 + 2 = 34", "51 - (-11) = 62", "$460 / 5 = $92",
# "29/2 = 14", "99 x 3 = 297", "17 + (-18) = 17 - 18 = -1", and algebra ("16 * x = 1216",
# "2x + 4 = 14", "x = 5") that is no computation. So each side is the longest run of expression
# characters next to its "=" that parses; "x" multiplies only between spaces ("99 x 3"), so the
# unknown of "2x" or "x + 4" makes its side fail to parse instead of reading as a product.
_PROSE_CHARS = frozenset("0123456789.,()+-*/×÷−$ ")
_MAX_SIDE = 200  # characters; a longer run of digits and operators is not one computation
#: A number in prose (sign, "$", thousands separators), not inside a word or a longer number.
_PROSE_NUMBER = re.compile(r"(?<![\w.,])[-−]?\$?(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?![\d])")


@dataclass(frozen=True)
class StatedStep:
    """One computation a text states: "10 + 9 = 19", "10 / 3 = 3.33", "17 + (-18) = 17 - 18"."""

    left: str  # the left side as written
    result: str  # the right side: a number without "$" or separators ("-84", "1200"), or the
    #: expression as written when the right side is one (a chain)
    computed: Fraction | None  # the left side's exact value; None when it divides by zero
    stated: Fraction  # the right side's exact value
    number: bool  # whether the right side is a plain number

    @property
    def correct(self) -> bool:
        """Whether the left side equals the right: a number as :func:`written_as` accepts it,
        an expression by value (:func:`numbers_equal`)."""
        if self.computed is None:
            return False
        if self.number:
            return written_as(self.computed, self.result)
        return numbers_equal(self.computed, self.stated)


def written_as(exact: Fraction, written: str) -> bool:
    """Whether ``written`` (a number as a text states it: "19", "3.33", "-84") writes ``exact``.

    Exactly; or as :func:`format_number` writes it (the teacher's six significant digits, which
    drop a large value's decimals); or, for a number written with decimals, rounded or cut to
    them: "10 / 3 = 3.33" and "2 / 3 = 0.66" are right, "10 / 3 = 3.4" is not. A whole number
    must be exact ("10 / 3 = 3" is wrong): rounding to a whole number is a slip in these
    problems more often than a choice.
    """
    try:
        stated = Fraction(written)
    except (ValueError, ZeroDivisionError):
        return False
    if stated == exact or written == format_number(exact):
        return True
    decimals = len(written.partition(".")[2])
    if decimals == 0:
        return False
    unit = Fraction(1, 10**decimals)
    return abs(stated - exact) <= unit / 2 or stated == math.trunc(exact / unit) * unit


def _in_run(text: str, position: int) -> bool:
    char = text[position]
    if char in _PROSE_CHARS:
        return True
    return char == "x" and text[position - 1 : position] == " " == text[position + 1 : position + 2]


def _inside_number(text: str, position: int) -> bool:
    """Whether a side starting (or ending) between ``position - 1`` and ``position`` would cut a
    number in two ("1,200" is not "200")."""
    if position <= 0 or position >= len(text):
        return False
    return text[position - 1] in "0123456789.," and text[position] in "0123456789"


def _side(candidate: str) -> Node | None:
    try:
        return parse(candidate.replace("$", ""))
    except ArithmeticParseError:
        return None


def _left_side(text: str, end: int) -> tuple[str, Node] | None:
    """The expression that ends at ``end`` (where an "=" is): the longest run that parses and
    holds an operator."""
    start = end
    while start > 0 and end - start < _MAX_SIDE and _in_run(text, start - 1):
        start -= 1
    for begin in range(start, end):
        if text[begin] == " " or _inside_number(text, begin):
            continue
        candidate = text[begin:end].strip()
        tree = _side(candidate)
        if tree is not None:
            return (candidate, tree) if isinstance(tree, BinOp) else None
    return None


def _right_side(text: str, start: int) -> tuple[str, Node] | None:
    """What follows an "=" at ``start``: the longest run that parses ("= 42." is 42)."""
    stop = start
    while stop < len(text) and stop - start < _MAX_SIDE and _in_run(text, stop):
        stop += 1
    for finish in range(stop, start, -1):
        if _inside_number(text, finish):
            continue
        candidate = text[start:finish].strip().rstrip(".,").strip()
        if candidate and (tree := _side(candidate)) is not None:
            return candidate, tree
    return None


def _written_number(side: str) -> str:
    # A number's tokens (sign, digits), without parentheses, "$" or separators: "(-11)" -> "-11".
    return "".join(t for t in tokenize(side.replace("$", "")) if t not in "()+")


def _is_equals(text: str, position: int) -> bool:
    # "==", "<=", ">=", "=>" and "!=" are not a step's "=".
    return text[position - 1 : position] not in ("=", "<", ">", "!") and text[
        position + 1 : position + 2
    ] not in ("=", ">")


def stated_steps(text: str) -> list[StatedStep]:
    """The computations ``text`` states, in order (see the comment above :class:`StatedStep`)."""
    steps = []
    position = text.find("=")
    while position != -1:
        left = _left_side(text, position) if _is_equals(text, position) else None
        right = _right_side(text, position + 1) if left is not None else None
        if left is not None and right is not None:
            try:
                computed: Fraction | None = value(left[1])
            except ArithmeticParseError:  # "5 / 0 = 0" states a step, and a wrong one
                computed = None
            try:
                stated = value(right[1])
            except ArithmeticParseError:
                stated = None
            if stated is not None:
                number = isinstance(right[1], Num)
                result = _written_number(right[0]) if number else right[0]
                steps.append(StatedStep(left[0], result, computed, stated, number))
        position = text.find("=", position + 1)
    return steps


def pending_step(text: str) -> Fraction | None:
    """The value of the computation ``text`` ends with, written up to its "=" ("... 10 + 9 =",
    or with a space after the "="): what a calculator writes next. ``None`` when the text does
    not end so or the left side divides by zero."""
    body = text.rstrip(" ")
    if not body.endswith("=") or not _is_equals(body, len(body) - 1):
        return None
    left = _left_side(body, len(body) - 1)
    if left is None:
        return None
    try:
        return value(left[1])
    except ArithmeticParseError:
        return None


def last_number(text: str) -> str | None:
    """The last number ``text`` states, written plainly ("-84", "1200"), or ``None``."""
    found = None
    for match in _PROSE_NUMBER.finditer(text):
        found = match
    if found is None:
        return None
    sign = "-" if found.group(0)[0] in "-−" else ""
    return sign + found.group(1).replace(",", "")
