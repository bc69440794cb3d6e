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
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from mindmirror.student.arithmetic import (
    ArithmeticParseError,
    BinOp,
    Node,
    Num,
    format_number,
    parse,
    value,
)
from mindmirror.student.jsonl import write_jsonl_atomic
from mindmirror.student.tasks._arith_templates import (
    CONTAINERS,
    ITEMS,
    NAMES,
    ONE_STEP,
    PLACES,
    PRONOUNS,
    TWO_STEP,
    Template,
    pick,
)
from mindmirror.student.tasks.base import CoTExemplar, Example, SelfEvalExemplar, TaskDataError
from mindmirror.student.tasks.svamp import SvampTask, canonical_equation

__all__ = [
    "SPLITS",
    "ArithProblem",
    "ArithTask",
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
# The generator builds trees (:mod:`mindmirror.student.arithmetic`'s) and the simulated teacher
# edits them (swaps an operation, drops a number); the label text is SVAMP's canonical form.
def parse_equation(text: str) -> Node:
    """The tree of an equation (any spelling :func:`canonical_equation` accepts), read from its
    canonical label, so that its numbers are the label's."""
    label = canonical_equation(text)
    try:
        return parse(label)
    except ArithmeticParseError as error:  # a number too large or small for the label's digits
        raise TaskDataError(f"not an arithmetic equation: {text!r} ({error})") from None


def render_equation(node: Node, *, teacher: bool = False) -> str:
    """Write a tree as an equation.

    The default is SVAMP's canonical label (``( 12 + 5 ) - 3``); ``teacher=True`` writes it the
    way an LLM does inside "The answer is (...)": ``(12 + 5) - 3``.
    """
    return _render(node, teacher, top=True)


def _render(node: Node, teacher: bool, top: bool) -> str:
    if isinstance(node, Num):
        if node.value < 0 and not teacher:  # the label spells a sign as its own token
            return f"- {format_number(-node.value)}"
        return format_number(node.value)
    body = f"{_render(node.left, teacher, False)} {node.op} {_render(node.right, teacher, False)}"
    if top:
        return body
    return f"({body})" if teacher else f"( {body} )"


def equation_value(node: Node) -> Fraction:
    """The value of the equation a tree writes: each number counts with the digits
    :func:`render_equation` gives it, so a tree built from rounded intermediate results (the
    simulated teacher's ``10 / 3 = 3.33333``) has the value of its text."""
    return value(_as_written(node))


def _as_written(node: Node) -> Node:
    if isinstance(node, Num):
        return Num(Fraction(format_number(node.value)))
    return BinOp(node.op, _as_written(node.left), _as_written(node.right))


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


# ----- the generator ------------------------------------------------------------------------
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


def _distinct_numbers(template: Template, rng: random.Random, needs_d: bool) -> dict[str, int]:
    # Distinct numbers keep a problem unambiguous (which 7 is meant?) and make a swapped or
    # dropped number visible in a wrong answer.
    while True:
        numbers = template.sample(rng)
        if needs_d:
            numbers["d"] = pick(rng, 2, 60)
        if len(set(numbers.values())) == len(numbers):
            return numbers


def _make_problem(rng: random.Random, two_step_fraction: float, problem_id: str) -> ArithProblem:
    if rng.random() < two_step_fraction:
        template = rng.choice(TWO_STEP)
    else:
        template = rng.choice(ONE_STEP[rng.choice("+-*/")])
    phrasing = rng.choice(template.phrasings)
    numbers = _distinct_numbers(template, rng, "{d}" in phrasing)
    (name, pronoun), (friend, _) = rng.sample(NAMES, 2)
    item, item2 = rng.sample(ITEMS, 2)
    box, boxes = rng.choice(CONTAINERS)
    he, him, his = PRONOUNS[pronoun]
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
        place=rng.choice(PLACES),
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
    names = {t.name: 1 for group in ONE_STEP.values() for t in group}
    names.update({t.name: 2 for t in TWO_STEP})
    return names
