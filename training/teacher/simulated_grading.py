"""What a simulated self-evaluation says: why a chain of thought is right, wrong or doubtful.

A careful grader's rationale, read from the judged text: it checks every "x op y = z" step and
compares the final equation's numbers and operations with the gold equation's. A verdict that
disagrees with the truth gets a plausible grader's mistake instead (accepting a wrong chain
after restating it, or inventing a wrong operation in a right one).
:func:`mindmirror.training.teacher.simulated.simulate_self_evaluation` draws the verdict.
"""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

from mindmirror.student.arithmetic import (
    Node,
    format_number,
    numbers_equal,
    step_claims,
    try_evaluate,
)
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks.arith import (
    equation_leaves,
    equation_ops,
    equation_value,
    parse_equation,
    render_equation,
)
from mindmirror.training.teacher.simulated_reasoning import (
    operation_swaps,
    question_numbers,
    value_differs,
)

__all__ = ["evaluation_rationale"]

_OP_NOUN = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
_OP_VERB = {"+": "adds", "-": "subtracts", "*": "multiplies", "/": "divides"}
# "x op y = z" as a chain of thought states a step


def _gold_sentence(gold: Node) -> str:
    equation = render_equation(gold, teacher=True)
    return f"The right equation is {equation} = {format_number(equation_value(gold))}."


def _diagnose(reasoning_rationale: str, answer: str | None, gold: Node, question: str) -> str:
    """Why a chain of thought is wrong, read from its text the way a careful grader would."""
    if answer is None:
        return "The reasoning never states a final equation."
    for a, op, b, claimed in step_claims(reasoning_rationale):
        true_value = try_evaluate(f"{a} {op} {b}")
        if true_value is not None and not numbers_equal(true_value, Fraction(claimed)):
            right = format_number(true_value)
            return f"It says {a} {op} {b} = {claimed}, but {a} {op} {b} is {right}."
    tree = parse_equation(answer)
    leaves, gold_leaves = Counter(equation_leaves(tree)), Counter(equation_leaves(gold))
    in_question = set(question_numbers(question))
    extra = leaves - gold_leaves
    missing = gold_leaves - leaves
    foreign = [n for n in extra if n not in in_question]
    if foreign:
        return (
            f"It uses {format_number(foreign[0])}, which is not one of the numbers in the problem."
        )
    if missing:
        if extra:
            return (
                f"It uses {format_number(next(iter(extra)))} where the problem needs "
                f"{format_number(next(iter(missing)))}."
            )
        return f"It leaves out the {format_number(next(iter(missing)))} from the problem."
    if extra:
        return f"It uses {format_number(next(iter(extra)))}, which the question does not need."
    ops, gold_ops = equation_ops(tree), equation_ops(gold)
    if Counter(ops) != Counter(gold_ops):
        wrong = next(op for op in ops if op not in gold_ops or ops.count(op) > gold_ops.count(op))
        right = next(op for op in gold_ops if op not in ops or gold_ops.count(op) > ops.count(op))
        return f"It {_OP_VERB[wrong]} where the problem calls for {_OP_NOUN[right]}."
    return "It combines the right numbers in the wrong order."


def evaluation_rationale(
    verdict: Verdict,
    truth: Verdict,
    rationale: str,
    answer: str | None,
    gold: Node,
    question: str,
    rng: random.Random,
) -> str:
    claims = [" ".join(c[:3]) + f" = {c[3]}" for c in step_claims(rationale)]
    shown = ", then ".join(claims) if claims else "no intermediate step"
    value = try_evaluate(answer)
    value_text = format_number(value) if value is not None else "nothing"
    equation = f"({render_equation(parse_equation(answer), teacher=True)})" if answer else "it"
    if verdict is Verdict.UNCERTAIN:
        return rng.choice(
            (
                f"The reasoning computes {shown} and answers {value_text}, but the wording "
                "could be read in more than one way, so I cannot be sure it is what the "
                "question asks.",
                f"The equation {equation} gives {value_text}. I am not sure the numbers are "
                "combined the way the problem describes.",
            )
        )
    if verdict is Verdict.CORRECT:
        if truth is Verdict.CORRECT:
            ops = " and then ".join(_OP_NOUN[op] for op in equation_ops(gold))
            return rng.choice(
                (
                    f"The problem needs {ops}, and that is what the reasoning does. "
                    f"{shown[0].upper() + shown[1:]} is computed correctly, so {equation} "
                    f"= {value_text} answers the question.",
                    f"The reasoning uses the right numbers from the problem and computes "
                    f"{shown} correctly. The equation {equation} gives {value_text}, which "
                    "answers the question.",
                )
            )
        # Fooled: the grader restates the reasoning and accepts it, as LLM graders often do.
        return (
            f"The reasoning uses numbers from the problem and computes {shown}. "
            f"The equation {equation} gives {value_text}, which looks right."
        )
    # Verdict WRONG.
    if truth is Verdict.WRONG:
        return f"{_diagnose(rationale, answer, gold, question)} {_gold_sentence(gold)}"
    # A false alarm: the grader invents an error in a right chain, with a plausible reason.
    gold_value = equation_value(gold)
    swaps = [swap for swap in operation_swaps(gold) if value_differs(swap[0], gold_value)]
    if not swaps:
        return f"The equation {equation} = {value_text} does not seem to use every step."
    alternative, old, new = rng.choice(swaps)
    return (
        f"The problem seems to call for {_OP_NOUN[new]} rather than {_OP_NOUN[old]}. "
        f"The equation should be {render_equation(alternative, teacher=True)} = "
        f"{format_number(equation_value(alternative))}."
    )
