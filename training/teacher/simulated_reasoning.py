"""How the simulated teacher writes a chain of thought, and the mistakes it makes in one.

Pure functions of an equation tree (and, for wording, the question): the computation steps a
teacher writes for it and their sentences, and the wrong trees an LLM produces on SVAMP-style
problems (a confused operation, a dropped number, a swapped or distractor number, an arithmetic
slip carried into the answer). :func:`mindmirror.training.teacher.simulated.simulate_cot`
decides, with its own random stream, which of them a sample gets.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from mindmirror.student.arithmetic import ArithmeticParseError, BinOp, Node, Num, format_number
from mindmirror.student.tasks.arith import (
    equation_leaves,
    equation_ops,
    equation_value,
)

__all__ = [
    "commute_somewhere",
    "computation_steps",
    "dropped_numbers",
    "operation_swaps",
    "prefer_positive",
    "question_numbers",
    "question_unit",
    "slip_candidates",
    "swapped_numbers",
    "value_differs",
    "write_rationale",
    "wrong_operations",
]

_NUMBER = re.compile(r"\d+")
# The confusions an LLM makes on word problems: the "other" operation of a pair first.
_CONFUSIONS = {"+": ("-", "*"), "-": ("+",), "*": ("+", "/"), "/": ("*", "-")}
_STEP_PHRASES = {
    "+": (
        "{a} + {b} = {r}.",
        "Adding them gives {a} + {b} = {r}.",
        "Together that is {a} + {b} = {r}{u}.",
    ),
    "-": (
        "{a} - {b} = {r}.",
        "Taking away {b} leaves {a} - {b} = {r}{u}.",
        "The difference is {a} - {b} = {r}.",
    ),
    "*": (
        "{a} * {b} = {r}.",
        "{a} groups of {b} make {a} * {b} = {r}{u}.",
        "Multiplying gives {a} * {b} = {r}.",
    ),
    "/": (
        "{a} / {b} = {r}.",
        "Sharing {a} equally into {b} gives {a} / {b} = {r}{u}.",
        "Dividing gives {a} / {b} = {r}.",
    ),
}
_FIRST = ("First, ", "", "To begin, ")
_THEN = ("Then ", "Next, ", "After that, ")


def question_unit(question: str) -> str:
    """The thing the question counts ("apples"), for the rationale's wording."""
    match = re.search(r"How many (?:more |fewer )?(\w+)", question)
    if match:
        return match.group(1)
    return "dollars" if "How much money" in question else ""


def question_numbers(question: str) -> list[Fraction]:
    return [Fraction(number) for number in _NUMBER.findall(question)]


def computation_steps(node: Node, slip: tuple[int, Fraction] | None) -> tuple[list[tuple], Node]:
    """The computation steps of ``node`` (children first) and the equation a teacher writes.

    ``slip = (k, value)`` makes step k come out as ``value``; the later steps, and the final
    equation, carry that wrong number on, as an LLM does when it reuses its own result.
    Returns ``[(a, op, b, result), ...]`` and the (possibly slipped) answer equation.
    """
    steps: list[tuple] = []

    def walk(current: Node) -> tuple[Fraction, Node]:
        if isinstance(current, Num):
            return current.value, current
        left_value, left_node = walk(current.left)
        right_value, right_node = walk(current.right)
        result = equation_value(BinOp(current.op, Num(left_value), Num(right_value)))
        if slip is not None and slip[0] == len(steps):
            steps.append((left_value, current.op, right_value, slip[1]))
            return slip[1], Num(slip[1])
        steps.append((left_value, current.op, right_value, result))
        return result, BinOp(current.op, left_node, right_node)

    _, answer = walk(node)
    return steps, answer


def write_rationale(steps: list[tuple], unit: str, rng: random.Random) -> str:
    u = f" {unit}" if unit else ""
    sentences = []
    for index, (a, op, b, result) in enumerate(steps):
        phrase = rng.choice(_STEP_PHRASES[op]).format(
            a=format_number(a), b=format_number(b), r=format_number(result), u=u
        )
        if len(steps) > 1:
            lead = rng.choice(_FIRST) if index == 0 else rng.choice(_THEN)
            phrase = lead + (phrase[0].lower() + phrase[1:] if lead else phrase)
        sentences.append(phrase)
    return " ".join(sentences)


def value_differs(candidate: Node, gold_value: Fraction) -> bool:
    try:
        return equation_value(candidate) != gold_value
    except ArithmeticParseError:  # divides by zero
        return False


def prefer_positive(candidates: list[Node]) -> list[Node]:
    # LLM slips on these problems rarely go negative ("5 - 12"); keep those for when nothing
    # else is left.
    positive = [c for c in candidates if all(step[3] > 0 for step in computation_steps(c, None)[0])]
    return positive or candidates


def replace_at(node: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    assert isinstance(node, BinOp)
    if path[0] == 0:
        return BinOp(node.op, replace_at(node.left, path[1:], new), node.right)
    return BinOp(node.op, node.left, replace_at(node.right, path[1:], new))


def subtrees(node: Node, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Node]]:
    out = [(path, node)]
    if isinstance(node, BinOp):
        out += subtrees(node.left, (*path, 0)) + subtrees(node.right, (*path, 1))
    return out


def operation_swaps(gold: Node) -> list[tuple[Node, str, str]]:
    """Each tree with one operation replaced by a confusable one: (tree, old op, new op)."""
    return [
        (replace_at(gold, path, BinOp(alt, node.left, node.right)), node.op, alt)
        for path, node in subtrees(gold)
        if isinstance(node, BinOp)
        for alt in _CONFUSIONS[node.op]
    ]


def wrong_operations(gold: Node) -> list[Node]:
    return [tree for tree, _, _ in operation_swaps(gold)]


def dropped_numbers(gold: Node) -> list[Node]:
    # Keep one operand of an operation whose other side holds a further operation: the
    # answer then forgets a number ("(8 * 5)" for "(8 * 5) + 6"). A one-step problem has no
    # number to drop without leaving a bare number, which LLMs rarely answer.
    candidates = []
    for path, node in subtrees(gold):
        if not isinstance(node, BinOp):
            continue
        for keep, other in ((node.left, node.right), (node.right, node.left)):
            candidate = replace_at(gold, path, keep)
            if (isinstance(keep, BinOp) or isinstance(other, BinOp)) and equation_ops(candidate):
                candidates.append(candidate)
    return candidates


def swapped_numbers(gold: Node, question: str) -> list[Node]:
    candidates = []
    paths = subtrees(gold)
    for path, node in paths:  # operands reversed: "6 / 48" for "48 / 6"
        if isinstance(node, BinOp) and node.op in "-/":
            candidates.append(replace_at(gold, path, BinOp(node.op, node.right, node.left)))
    leaves = [(path, node) for path, node in paths if isinstance(node, Num)]
    for i, (path_i, leaf_i) in enumerate(leaves):  # numbers moved between steps
        for path_j, leaf_j in leaves[i + 1 :]:
            candidates.append(replace_at(replace_at(gold, path_i, leaf_j), path_j, leaf_i))
    used = set(equation_leaves(gold))
    distractors = [n for n in question_numbers(question) if n not in used]
    for distractor in distractors:  # the distractor number used instead of the right one
        for path, _ in leaves:
            candidates.append(replace_at(gold, path, Num(distractor)))
    return candidates


def slip_candidates(gold: Node, rng: random.Random) -> list[tuple[int, Fraction]]:
    steps, _ = computation_steps(gold, None)
    out = []
    for index, (*_, result) in enumerate(steps):
        digits = str(result.numerator)
        deltas = [1, -1, 2, -2, 10, -10]
        values = [result + d for d in deltas]
        if result.denominator == 1 and len(digits) == 2 and "0" != digits[1] != digits[0]:
            values.append(Fraction(int(digits[::-1])))  # transposed digits: 42 -> 24
        values = [v for v in values if v > 0 and v != result]
        out.append((index, rng.choice(values)))
    return out


def commute_somewhere(tree: Node, rng: random.Random) -> Node:
    commutative = [(p, n) for p, n in subtrees(tree) if isinstance(n, BinOp) and n.op in "+*"]
    if not commutative:
        return tree
    path, node = rng.choice(commutative)
    return replace_at(tree, path, BinOp(node.op, node.right, node.left))
