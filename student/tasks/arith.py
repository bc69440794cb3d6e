"""arith: a synthetic SVAMP-style task that mindmirror generates itself, for the offline demo.

No LLM teacher or pretrained T5 can be assumed offline, so the demo runs on templated
arithmetic word problems whose exact equations are known. They read like SVAMP ("Body.\\n
Question?"), use one or two of ``+ - * /``, come in several templates and phrasings per
operation (some with a distractor number, some where the keyword misleads, as in SVAMP), and
are sized for a tiny T5 trained from scratch: operands are small and divisions come out whole.

Labels and answers follow SVAMP exactly (the task subclasses :class:`SvampTask`): an equation
such as ``( 12 + 5 ) - 3``, judged by its value. Splits are generated from a seed; each split
has its own random stream, so the test split does not change when more training problems are
asked for, and no question text appears in two splits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from mindmirror.student.arithmetic import evaluate
from mindmirror.student.jsonl import write_jsonl_atomic
from mindmirror.student.tasks.base import CoTExemplar, Example, SelfEvalExemplar, TaskDataError
from mindmirror.student.tasks.svamp import SvampTask, canonical_equation

__all__ = [
    "SPLITS",
    "ArithProblem",
    "ArithTask",
    "BinOp",
    "Node",
    "Num",
    "equation_leaves",
    "equation_ops",
    "equation_value",
    "generate_problems",
    "generate_splits",
    "parse_equation",
    "render_equation",
    "template_names",
    "write_arith_data",
]

SPLITS = ("train", "validation", "test")


# ----- equations as trees -------------------------------------------------------------------
# The generator builds trees and the simulated teacher edits them (swaps an operation, drops a
# number); the label text is always derived through SVAMP's canonical form.
@dataclass(frozen=True)
class Num:
    value: Fraction


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: Node
    right: Node


Node = Num | BinOp

_TREE_TOKEN = re.compile(r"\d+(?:\.\d+)?|[-+*/()]")


def parse_equation(text: str) -> Node:
    """Parse an equation (any spelling :func:`canonical_equation` accepts) into a tree.

    Operators associate to the left and ``* /`` bind tighter, as in
    :mod:`mindmirror.student.arithmetic`; a leading minus on a number is read as a negative number.
    """
    tokens = _TREE_TOKEN.findall(canonical_equation(text))
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def expression() -> Node:
        node = term()
        while peek() in ("+", "-"):
            op = take()
            node = BinOp(op, node, term())
        return node

    def term() -> Node:
        node = factor()
        while peek() in ("*", "/"):
            op = take()
            node = BinOp(op, node, factor())
        return node

    def factor() -> Node:
        token = take()
        if token == "(":
            node = expression()
            take()  # ")": canonical_equation already checked the balance
            return node
        if token == "-":
            inner = factor()
            if isinstance(inner, Num):
                return Num(-inner.value)
            return BinOp("-", Num(Fraction(0)), inner)
        return Num(Fraction(token))

    return expression()


def render_equation(node: Node, *, teacher: bool = False) -> str:
    """Write a tree as an equation.

    The default is SVAMP's canonical label (``( 12 + 5 ) - 3``); ``teacher=True`` writes it the
    way an LLM does inside "The answer is (...)": ``(12 + 5) - 3``.
    """
    text = _render(node, teacher, top=True)
    return text if teacher else canonical_equation(text)


def _render(node: Node, teacher: bool, top: bool) -> str:
    if isinstance(node, Num):
        value = node.value
        text = str(value.numerator) if value.denominator == 1 else f"{float(value):.6g}"
        return text
    left = _render(node.left, teacher, top=False)
    right = _render(node.right, teacher, top=False)
    body = f"{left} {node.op} {right}"
    if top:
        return body
    return f"({body})" if teacher else f"( {body} )"


def equation_value(node: Node) -> Fraction:
    """The exact value of a tree, computed by the project's safe evaluator."""
    return evaluate(render_equation(node, teacher=True))


def equation_leaves(node: Node) -> list[Fraction]:
    """The numbers of a tree, left to right."""
    if isinstance(node, Num):
        return [node.value]
    return equation_leaves(node.left) + equation_leaves(node.right)


def equation_ops(node: Node) -> list[str]:
    """The operations of a tree in evaluation order (children before parents)."""
    if isinstance(node, Num):
        return []
    return [*equation_ops(node.left), *equation_ops(node.right), node.op]


def _n(value: int) -> Num:
    return Num(Fraction(value))


# ----- templates ----------------------------------------------------------------------------
_NAMES = (
    ("Tom", "he"),
    ("Ana", "she"),
    ("Sam", "he"),
    ("Mia", "she"),
    ("Raj", "he"),
    ("Lena", "she"),
    ("Ben", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Kate", "she"),
    ("Luis", "he"),
    ("Nina", "she"),
)
_ITEMS = (
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "books",
    "cookies",
    "shells",
    "stamps",
    "cards",
    "coins",
    "flowers",
    "toys",
    "candies",
    "balloons",
    "crayons",
    "eggs",
)
_CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"))
_PLACES = ("basket", "box", "classroom", "garden", "jar", "shop")
_PRONOUNS = {"he": ("He", "him", "his"), "she": ("She", "her", "her")}

Sampler = Callable[[random.Random], dict[str, int]]


@dataclass(frozen=True)
class _Template:
    name: str
    sample: Sampler  # numbers named a, b, c (and d, a distractor, where a phrasing uses it)
    build: Callable[[dict[str, int]], Node]
    phrasings: tuple[str, ...]


def _pick(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high)


def _add(rng: random.Random) -> dict[str, int]:
    return {"a": _pick(rng, 2, 50), "b": _pick(rng, 2, 50)}


def _sub(rng: random.Random) -> dict[str, int]:
    a = _pick(rng, 10, 60)
    return {"a": a, "b": _pick(rng, 2, a - 2)}


def _mul(rng: random.Random) -> dict[str, int]:
    return {"a": _pick(rng, 2, 12), "b": _pick(rng, 2, 12)}


def _div(rng: random.Random) -> dict[str, int]:
    b = _pick(rng, 2, 9)
    return {"a": b * _pick(rng, 2, 12), "b": b}


def _add_sub(rng: random.Random) -> dict[str, int]:
    a, b = _pick(rng, 5, 40), _pick(rng, 2, 30)
    return {"a": a, "b": b, "c": _pick(rng, 2, a + b - 2)}


def _sub_add(rng: random.Random) -> dict[str, int]:
    a = _pick(rng, 10, 50)
    return {"a": a, "b": _pick(rng, 2, a - 2), "c": _pick(rng, 2, 30)}


def _sum3(rng: random.Random) -> dict[str, int]:
    return {"a": _pick(rng, 2, 40), "b": _pick(rng, 2, 40), "c": _pick(rng, 2, 40)}


def _mul_add(rng: random.Random) -> dict[str, int]:
    return {"a": _pick(rng, 2, 10), "b": _pick(rng, 2, 10), "c": _pick(rng, 2, 20)}


def _sub_mul(rng: random.Random) -> dict[str, int]:
    b, c = _pick(rng, 2, 9), _pick(rng, 2, 9)
    return {"a": b * c + _pick(rng, 1, 30), "b": b, "c": c}


def _add_div(rng: random.Random) -> dict[str, int]:
    c = _pick(rng, 2, 9)
    total = c * _pick(rng, 2, 12)
    a = _pick(rng, 2, total - 2)
    return {"a": a, "b": total - a, "c": c}


def _sub_div(rng: random.Random) -> dict[str, int]:
    c = _pick(rng, 2, 9)
    b = _pick(rng, 2, 30)
    return {"a": c * _pick(rng, 2, 10) + b, "b": b, "c": c}


def _mul_sub(rng: random.Random) -> dict[str, int]:
    a, b = _pick(rng, 2, 10), _pick(rng, 2, 10)
    return {"a": a, "b": b, "c": _pick(rng, 2, a * b - 2)}


def _ab(op: str) -> Callable[[dict[str, int]], Node]:
    return lambda n: BinOp(op, _n(n["a"]), _n(n["b"]))


def _ba(op: str) -> Callable[[dict[str, int]], Node]:
    return lambda n: BinOp(op, _n(n["b"]), _n(n["a"]))


def _ab_c(inner: str, outer: str) -> Callable[[dict[str, int]], Node]:
    return lambda n: BinOp(outer, BinOp(inner, _n(n["a"]), _n(n["b"])), _n(n["c"]))


def _a_bc(outer: str, inner: str) -> Callable[[dict[str, int]], Node]:
    return lambda n: BinOp(outer, _n(n["a"]), BinOp(inner, _n(n["b"]), _n(n["c"])))


# Slots: {name} {he} {He} {him} {his} {friend} {item} {item2} {box} {boxes} {place} and the
# numbers {a} {b} {c} {d}. Phrasings with {d} carry a distractor number, as SVAMP does.
_ONE_STEP: dict[str, tuple[_Template, ...]] = {
    "+": (
        _Template(
            "add_more",
            _add,
            _ab("+"),
            (
                "{name} had {a} {item}. {He} found {b} more {item}.\n"
                "How many {item} does {name} have now?",
                "There were {a} {item} in the {place}. {name} put {b} more {item} in the "
                "{place}.\nHow many {item} are in the {place} now?",
                "{name} had {a} {item}. {friend} gave {him} {b} more.\n"
                "How many {item} does {name} have now?",
                "{name} had {a} {item} and {d} {item2}. {He} bought {b} more {item}.\n"
                "How many {item} does {name} have now?",
            ),
        ),
        _Template(
            "add_combine",
            _add,
            _ab("+"),
            (
                "{name} picked {a} {item} on Monday and {b} {item} on Tuesday.\n"
                "How many {item} did {name} pick altogether?",
                "{name} has {a} {item} and {friend} has {b} {item}.\n"
                "How many {item} do they have in total?",
                "A {box} holds {a} red {item} and {b} blue {item}.\n"
                "How many {item} are in the {box}?",
            ),
        ),
    ),
    "-": (
        _Template(
            "sub_take",
            _sub,
            _ab("-"),
            (
                "{name} had {a} {item}. {He} gave {b} {item} to {friend}.\n"
                "How many {item} does {name} have left?",
                "There were {a} {item} in the {place}. {name} took {b} of them.\n"
                "How many {item} are left in the {place}?",
                "{name} had {a} {item} but lost {b} of them.\n"
                "How many {item} does {name} have now?",
                "{name} had {a} {item} and {d} {item2}. {He} gave {b} {item} to {friend}.\n"
                "How many {item} does {name} have left?",
            ),
        ),
        _Template(
            "sub_compare",
            _sub,
            _ab("-"),
            (
                "{name} has {a} {item} and {friend} has {b} {item}.\n"
                "How many more {item} does {name} have than {friend}?",
                "{friend} has {b} {item}. {name} has {a} {item}.\n"
                "How many fewer {item} does {friend} have than {name}?",
            ),
        ),
        # The keyword says "more" or "gave", yet the answer is a difference.
        _Template(
            "sub_inverse",
            _sub,
            _ab("-"),
            (
                "{name} had some {item}. {He} found {b} more and now has {a} {item}.\n"
                "How many {item} did {name} have at first?",
                "After {friend} gave {him} {b} {item}, {name} has {a} {item}.\n"
                "How many {item} did {name} have before?",
            ),
        ),
    ),
    "*": (
        _Template(
            "mul_groups",
            _mul,
            _ab("*"),
            (
                "{name} has {a} {boxes} with {b} {item} in each {box}.\n"
                "How many {item} does {name} have in total?",
                "{name} bought {a} packs of {item}. Each pack has {b} {item}.\n"
                "How many {item} did {name} buy?",
                "There are {a} rows of {item} with {b} {item} in each row.\n"
                "How many {item} are there in all?",
                "{name} has {a} {boxes}. Each {box} has {b} {item} and {d} {item2}.\n"
                "How many {item} does {name} have?",
            ),
        ),
        _Template(
            "mul_rate",
            _mul,
            _ba("*"),
            (
                "{name} collects {b} {item} every day.\n"
                "How many {item} does {name} collect in {a} days?",
                "Each {box} holds {b} {item}.\nHow many {item} do {a} {boxes} hold?",
            ),
        ),
    ),
    "/": (
        _Template(
            "div_share",
            _div,
            _ab("/"),
            (
                "{name} has {a} {item} and shares them equally among {b} friends.\n"
                "How many {item} does each friend get?",
                "{a} {item} are split equally into {b} {boxes}.\n"
                "How many {item} are in each {box}?",
                "{name} has {a} {item} and {d} {item2}. {He} puts the {item} equally into "
                "{b} {boxes}.\nHow many {item} are in each {box}?",
            ),
        ),
        _Template(
            "div_groups",
            _div,
            _ab("/"),
            (
                "{name} packs {a} {item} into {boxes} of {b}.\nHow many {boxes} does {name} fill?",
                "{name} has {a} {item}. Each {box} holds {b} {item}.\n"
                "How many {boxes} does {name} need?",
                "{name} uses {b} {item} a day.\nHow many days will {a} {item} last?",
            ),
        ),
    ),
}

_TWO_STEP: tuple[_Template, ...] = (
    _Template(
        "add_sub",
        _add_sub,
        _ab_c("+", "-"),
        (
            "{name} had {a} {item}. {He} found {b} more and then gave {c} to {friend}.\n"
            "How many {item} does {name} have now?",
            "There were {a} {item} in the {place}. {name} added {b} and {friend} took {c} "
            "away.\nHow many {item} are in the {place} now?",
        ),
    ),
    _Template(
        "sub_add",
        _sub_add,
        _ab_c("-", "+"),
        (
            "{name} had {a} {item}. {He} lost {b} {item} and then found {c} new ones.\n"
            "How many {item} does {name} have now?",
            "There were {a} {item} in the {place}. {name} took {b} away and later put {c} "
            "back.\nHow many {item} are in the {place} now?",
        ),
    ),
    _Template(
        "sum3",
        _sum3,
        _ab_c("+", "+"),
        (
            "{name} picked {a} {item} on Monday, {b} on Tuesday and {c} on Wednesday.\n"
            "How many {item} did {name} pick altogether?",
        ),
    ),
    _Template(
        "mul_add",
        _mul_add,
        _ab_c("*", "+"),
        (
            "{name} has {a} {boxes} with {b} {item} in each and {c} loose {item}.\n"
            "How many {item} does {name} have in total?",
            "{name} bought {a} packs of {b} {item} and {c} single {item}.\n"
            "How many {item} did {name} buy?",
        ),
    ),
    _Template(
        "sub_mul",
        _sub_mul,
        _a_bc("-", "*"),
        (
            "{name} had {a} dollars. {He} bought {b} {item} for {c} dollars each.\n"
            "How much money does {name} have left?",
            "{name} had {a} {item}. {He} gave {c} {item} to each of {b} friends.\n"
            "How many {item} does {name} have left?",
        ),
    ),
    _Template(
        "add_div",
        _add_div,
        _ab_c("+", "/"),
        (
            "{name} has {a} red {item} and {b} blue {item}. {He} shares them equally among "
            "{c} friends.\nHow many {item} does each friend get?",
        ),
    ),
    _Template(
        "sub_div",
        _sub_div,
        _ab_c("-", "/"),
        (
            "{name} had {a} {item} and gave {b} away. {He} put the rest equally into {c} "
            "{boxes}.\nHow many {item} are in each {box}?",
        ),
    ),
    _Template(
        "mul_sub",
        _mul_sub,
        _ab_c("*", "-"),
        (
            "{name} bought {a} {boxes} with {b} {item} in each. {He} gave {c} {item} to "
            "{friend}.\nHow many {item} does {name} have left?",
        ),
    ),
)


@dataclass(frozen=True)
class ArithProblem:
    """One generated problem: its record fields plus the tree and template it came from."""

    id: str
    question: str
    equation: Node
    template: str

    @property
    def label(self) -> str:
        return render_equation(self.equation)

    def record(self) -> dict[str, str]:
        """The task JSONL record (``{"id", "input", "label"}``)."""
        return {"id": self.id, "input": self.question, "label": self.label}

    def example(self) -> Example:
        """The problem as every stage sees it (what loading :meth:`record` gives)."""
        return Example(id=self.id, question=self.question, label=self.label)


def _distinct_numbers(template: _Template, rng: random.Random, needs_d: bool) -> dict[str, int]:
    # Distinct numbers keep a problem unambiguous (which 7 is meant?) and make a swapped or
    # dropped number visible in a wrong answer.
    while True:
        numbers = template.sample(rng)
        if needs_d:
            numbers["d"] = _pick(rng, 2, 60)
        if len(set(numbers.values())) == len(numbers):
            return numbers


def _make_problem(rng: random.Random, two_step_fraction: float, problem_id: str) -> ArithProblem:
    if rng.random() < two_step_fraction:
        template = rng.choice(_TWO_STEP)
    else:
        template = rng.choice(_ONE_STEP[rng.choice("+-*/")])
    phrasing = rng.choice(template.phrasings)
    numbers = _distinct_numbers(template, rng, "{d}" in phrasing)
    (name, pronoun), (friend, _) = rng.sample(_NAMES, 2)
    item, item2 = rng.sample(_ITEMS, 2)
    box, boxes = rng.choice(_CONTAINERS)
    he, him, his = _PRONOUNS[pronoun]
    question = phrasing.format(
        name=name,
        He=he,
        him=him,
        his=his,
        friend=friend,
        item=item,
        item2=item2,
        box=box,
        boxes=boxes,
        place=rng.choice(_PLACES),
        **numbers,
    )
    equation = template.build(numbers)
    value = equation_value(equation)
    # The templates' samplers guarantee this; checking keeps a future template honest.
    if value.denominator != 1 or value <= 0:
        raise AssertionError(f"template {template.name} produced {render_equation(equation)}")
    return ArithProblem(problem_id, question, equation, template.name)


def generate_problems(
    count: int,
    seed: int = 0,
    split: str = "train",
    *,
    exclude: frozenset[str] | set[str] = frozenset(),
    two_step_fraction: float = 0.4,
) -> list[ArithProblem]:
    """``count`` distinct problems for ``split``, none whose question is in ``exclude``.

    The stream depends only on (seed, split), so a split's first k problems are the same
    whatever ``count`` is asked for.
    """
    if count < 0:
        raise TaskDataError(f"cannot generate a negative number of problems ({count})")
    if not 0.0 <= two_step_fraction <= 1.0:
        raise TaskDataError(f"two_step_fraction must be in [0, 1], got {two_step_fraction}")
    # A string seed is hashed with SHA-512 by `random`, so streams are stable across runs.
    rng = random.Random(f"arith|{seed}|{split}")  # noqa: S311 (data, not a secret)
    problems: list[ArithProblem] = []
    seen = set(exclude)
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise TaskDataError(f"could not find {count} distinct {split} problems; ask for fewer")
        problem = _make_problem(rng, two_step_fraction, f"arith-{split}-{len(problems):05d}")
        if problem.question in seen:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return problems


def generate_splits(
    seed: int = 0,
    train: int = 2000,
    validation: int = 200,
    test: int = 500,
    *,
    two_step_fraction: float = 0.4,
) -> dict[str, list[ArithProblem]]:
    """Seeded train/validation/test splits with no question text shared between them.

    Test is drawn first and validation second, so both stay the same when ``train`` grows.
    """
    sizes = {"test": test, "validation": validation, "train": train}
    splits: dict[str, list[ArithProblem]] = {}
    taken: set[str] = set()
    for split, count in sizes.items():
        problems = generate_problems(
            count, seed, split, exclude=taken, two_step_fraction=two_step_fraction
        )
        taken.update(problem.question for problem in problems)
        splits[split] = problems
    return {split: splits[split] for split in SPLITS}


def write_arith_data(
    out_dir: str | Path,
    seed: int = 0,
    train: int = 2000,
    validation: int = 200,
    test: int = 500,
    *,
    two_step_fraction: float = 0.4,
) -> dict[str, Path]:
    """Generate the splits and write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``.

    Each file is written atomically; returns the path of each split. This is what
    ``mindmirror demo`` calls to make its data.
    """
    out = Path(out_dir)
    splits = generate_splits(seed, train, validation, test, two_step_fraction=two_step_fraction)
    paths: dict[str, Path] = {}
    for split, problems in splits.items():
        paths[split] = out / f"{split}.jsonl"
        write_jsonl_atomic(paths[split], (problem.record() for problem in problems))
    return paths


# ----- the task -----------------------------------------------------------------------------
class ArithTask(SvampTask):
    name = "arith"
    description = (
        "Synthetic SVAMP-style arithmetic word problems (generated offline for the demo); "
        "the answer is an equation judged by its value."
    )
    cot_exemplars: ClassVar[tuple[CoTExemplar, ...]] = (
        CoTExemplar(
            "Tom had 23 marbles. He found 9 more marbles.\nHow many marbles does Tom have now?",
            "Tom had 23 marbles and found 9 more. Adding them gives 23 + 9 = 32. "
            "The answer is (23 + 9).",
        ),
        CoTExemplar(
            "Ana has 6 boxes with 7 cookies in each box.\nHow many cookies does Ana have in total?",
            "There are 6 boxes of 7 cookies. 6 groups of 7 make 6 * 7 = 42 cookies. "
            "The answer is (6 * 7).",
        ),
        CoTExemplar(
            "Sam had 30 stickers. He lost 12 stickers and then found 5 new ones.\n"
            "How many stickers does Sam have now?",
            "First, 30 - 12 = 18 stickers are left. Then 18 + 5 = 23 stickers. "
            "The answer is ((30 - 12) + 5).",
        ),
        CoTExemplar(
            "Mia has 17 red shells and 19 blue shells. She shares them equally among 4 "
            "friends.\nHow many shells does each friend get?",
            "First, 17 + 19 = 36 shells in total. Then 36 / 4 = 9 shells for each friend. "
            "The answer is ((17 + 19) / 4).",
        ),
    )
    self_eval_exemplars: ClassVar[tuple[SelfEvalExemplar, ...]] = (
        SelfEvalExemplar(
            "Raj had 41 coins. He gave 16 coins to Zoe.\nHow many coins does Raj have left?",
            "Raj gave 16 of his 41 coins away. 41 - 16 = 25. The answer is (41 - 16).",
            "Evaluation:\nThe question asks how many coins Raj keeps after giving 16 away, "
            "which is a subtraction, and 41 - 16 = 25 is computed correctly.\n\n"
            "Evaluation result: the given answer is correct.",
        ),
        SelfEvalExemplar(
            "Lena has 8 jars with 5 candies in each jar and 6 loose candies.\n"
            "How many candies does Lena have in total?",
            "8 * 5 = 40 candies are in the jars. The answer is (8 * 5).",
            "Evaluation:\nThe reasoning counts the candies in the jars but leaves out the 6 "
            "loose candies. The right equation is (8 * 5) + 6 = 46.\n\n"
            "Evaluation result: the given answer is wrong.",
        ),
        SelfEvalExemplar(
            "Ben had some books. He bought 7 more and now has 20 books.\n"
            "How many books did Ben have at first?",
            "Ben bought 7 books and has 20, so 20 - 7 = 13. The answer is (20 - 7).",
            "Evaluation:\nThe reasoning takes the 7 new books away from the 20 he has now, "
            "but I cannot tell for sure from the wording whether the 20 counts the new books, "
            "so I am not certain the answer is right.\n\n"
            "Evaluation result: the given answer is uncertain.",
        ),
    )


def template_names() -> Mapping[str, int]:
    """Template name → number of operations, for reports that break accuracy down."""
    names = {t.name: 1 for group in _ONE_STEP.values() for t in group}
    names.update({t.name: 2 for t in _TWO_STEP})
    return names
