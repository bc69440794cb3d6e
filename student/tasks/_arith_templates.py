"""The ``arith`` task's problem templates: wording, number samplers and equation shapes.

Kept apart from :mod:`mindmirror.student.tasks.arith` (the task and its generator) because it is
data, not logic; the leading underscore keeps the task registry from taking it for a task.
Every template's samplers guarantee a whole, positive answer (the generator checks it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from mindmirror.student.arithmetic import BinOp, Node, Num

__all__ = [
    "CONTAINERS",
    "ITEMS",
    "NAMES",
    "ONE_STEP",
    "PLACES",
    "PRONOUNS",
    "TWO_STEP",
    "Template",
    "pick",
]


def _n(value: int) -> Num:
    return Num(Fraction(value))


NAMES = (
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
ITEMS = (
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
CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"))
PLACES = ("basket", "box", "classroom", "garden", "jar", "shop")
PRONOUNS = {"he": ("He", "him", "his"), "she": ("She", "her", "her")}

Sampler = Callable[[random.Random], dict[str, int]]


@dataclass(frozen=True)
class Template:
    name: str
    sample: Sampler  # numbers named a, b, c (and d, a distractor, where a phrasing uses it)
    build: Callable[[dict[str, int]], Node]
    phrasings: tuple[str, ...]


def pick(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high)


def _add(rng: random.Random) -> dict[str, int]:
    return {"a": pick(rng, 2, 50), "b": pick(rng, 2, 50)}


def _sub(rng: random.Random) -> dict[str, int]:
    a = pick(rng, 10, 60)
    return {"a": a, "b": pick(rng, 2, a - 2)}


def _mul(rng: random.Random) -> dict[str, int]:
    return {"a": pick(rng, 2, 12), "b": pick(rng, 2, 12)}


def _div(rng: random.Random) -> dict[str, int]:
    b = pick(rng, 2, 9)
    return {"a": b * pick(rng, 2, 12), "b": b}


def _add_sub(rng: random.Random) -> dict[str, int]:
    a, b = pick(rng, 5, 40), pick(rng, 2, 30)
    return {"a": a, "b": b, "c": pick(rng, 2, a + b - 2)}


def _sub_add(rng: random.Random) -> dict[str, int]:
    a = pick(rng, 10, 50)
    return {"a": a, "b": pick(rng, 2, a - 2), "c": pick(rng, 2, 30)}


def _sum3(rng: random.Random) -> dict[str, int]:
    return {"a": pick(rng, 2, 40), "b": pick(rng, 2, 40), "c": pick(rng, 2, 40)}


def _mul_add(rng: random.Random) -> dict[str, int]:
    return {"a": pick(rng, 2, 10), "b": pick(rng, 2, 10), "c": pick(rng, 2, 20)}


def _sub_mul(rng: random.Random) -> dict[str, int]:
    b, c = pick(rng, 2, 9), pick(rng, 2, 9)
    return {"a": b * c + pick(rng, 1, 30), "b": b, "c": c}


def _add_div(rng: random.Random) -> dict[str, int]:
    c = pick(rng, 2, 9)
    total = c * pick(rng, 2, 12)
    a = pick(rng, 2, total - 2)
    return {"a": a, "b": total - a, "c": c}


def _sub_div(rng: random.Random) -> dict[str, int]:
    c = pick(rng, 2, 9)
    b = pick(rng, 2, 30)
    return {"a": c * pick(rng, 2, 10) + b, "b": b, "c": c}


def _mul_sub(rng: random.Random) -> dict[str, int]:
    a, b = pick(rng, 2, 10), pick(rng, 2, 10)
    return {"a": a, "b": b, "c": pick(rng, 2, a * b - 2)}


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
ONE_STEP: dict[str, tuple[Template, ...]] = {
    "+": (
        Template(
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
        Template(
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
        Template(
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
        Template(
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
        Template(
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
        Template(
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
        Template(
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
        Template(
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
        Template(
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

TWO_STEP: tuple[Template, ...] = (
    Template(
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
    Template(
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
    Template(
        "sum3",
        _sum3,
        _ab_c("+", "+"),
        (
            "{name} picked {a} {item} on Monday, {b} on Tuesday and {c} on Wednesday.\n"
            "How many {item} did {name} pick altogether?",
        ),
    ),
    Template(
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
    Template(
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
    Template(
        "add_div",
        _add_div,
        _ab_c("+", "/"),
        (
            "{name} has {a} red {item} and {b} blue {item}. {He} shares them equally among "
            "{c} friends.\nHow many {item} does each friend get?",
        ),
    ),
    Template(
        "sub_div",
        _sub_div,
        _ab_c("-", "/"),
        (
            "{name} had {a} {item} and gave {b} away. {He} put the rest equally into {c} "
            "{boxes}.\nHow many {item} are in each {box}?",
        ),
    ),
    Template(
        "mul_sub",
        _mul_sub,
        _ab_c("*", "-"),
        (
            "{name} bought {a} {boxes} with {b} {item} in each. {He} gave {c} {item} to "
            "{friend}.\nHow many {item} does {name} have left?",
        ),
    ),
)
