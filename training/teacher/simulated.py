"""A simulated teacher for the ``arith`` task: the offline demo's stand-in for an LLM.

It is *simulated*: nothing here is a language model. Given a problem and its gold equation it
writes chains of thought in the text format an LLM teacher gives ("... The answer is
(<equation>).") and self-evaluations in the Mind's Mirror format ("Evaluation: ... Evaluation
result: the given answer is correct|wrong|uncertain."), with known, configurable error rates:

* a fraction ``error_rate`` of the chains of thought are wrong, in the ways LLMs are wrong on
  SVAMP: the wrong operation, a number dropped, a number swapped (operands reversed, moved, or
  a distractor number used), or an arithmetic slip whose wrong intermediate result is carried
  into the final equation. A wrong chain is always wrong *by value*;
* a self-evaluation's verdict is ``uncertain`` with probability ``uncertain_rate``, agrees
  with the truth (``correct`` for a right chain, ``wrong`` for a wrong one) with probability
  ``verdict_agreement``, and says the opposite otherwise. Its rationale says why: it checks
  each "x op y = z" step in the reasoning and compares the final equation's numbers and
  operations with the gold equation's;
* optionally (``unparseable_rate``) a chain of thought never states its final equation, or a
  self-evaluation forgets its result line, as real teachers sometimes do.

Every output is a pure function of (settings, question, sample index) — and of the reasoning
judged, for a self-evaluation — which is exactly what the teacher store's key holds (teacher id
with the settings, prompt with the question and reasoning, sample index): a rerun reproduces
the same text, and a stored answer is the one the simulator would give again. (The gold
equation is not in the key, as a real teacher's answer key is not: a question keeps its
answer.)

:func:`simulated_distillation_set` makes a whole distillation set in memory; the teacher
backend ``simulated`` (:mod:`mindmirror.training.teacher.backends.simulated`) gives the same texts
through the store and runner, as ``mindmirror teach run --teacher simulated``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mindmirror.student.arithmetic import (
    ArithmeticParseError,
    BinOp,
    Node,
    Num,
    format_number,
    numbers_equal,
    step_claims,
    try_evaluate,
)
from mindmirror.student.distillation import (
    DistillationRecord,
    cot_from_text,
    self_evaluation_from_text,
)
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import Verdict, verdict_sentence
from mindmirror.student.tasks import Example, TaskDataError, get_task
from mindmirror.student.tasks.arith import (
    equation_leaves,
    equation_ops,
    equation_value,
    parse_equation,
    render_equation,
)

__all__ = [
    "ERROR_KINDS",
    "SimulatedCoT",
    "SimulatedSelfEvaluation",
    "SimulatedTeacher",
    "SimulatedTeacherConfig",
    "SimulatedTeacherError",
    "realized_rates",
    "simulate_cot",
    "simulate_self_evaluation",
    "simulated_distillation_set",
]

ERROR_KINDS = ("wrong_operation", "dropped_number", "swapped_number", "arithmetic_slip")


class SimulatedTeacherError(MindmirrorError, ValueError):
    """Bad settings, or an example the simulated teacher cannot answer (no gold equation)."""


@dataclass(frozen=True)
class SimulatedTeacherConfig:
    """How often the simulated teacher is wrong, and how well it judges reasoning.

    ``verdict_agreement + uncertain_rate`` must not exceed 1; the rest is the probability of
    the opposite verdict. ``unparseable_rate`` (independent of the rest) is the share of chains
    of thought without a final equation and of self-evaluations without a verdict.
    """

    error_rate: float = 0.25
    verdict_agreement: float = 0.8
    uncertain_rate: float = 0.1
    error_kinds: tuple[str, ...] = ERROR_KINDS
    seed: int = 0
    unparseable_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "verdict_agreement", "uncertain_rate", "unparseable_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SimulatedTeacherError(f"{name} must be between 0 and 1, got {value}")
        if self.verdict_agreement + self.uncertain_rate > 1.0 + 1e-9:
            raise SimulatedTeacherError(
                "verdict_agreement + uncertain_rate must be at most 1, got "
                f"{self.verdict_agreement} + {self.uncertain_rate}"
            )
        unknown = sorted(set(self.error_kinds) - set(ERROR_KINDS))
        if unknown or not self.error_kinds:
            raise SimulatedTeacherError(
                f"error_kinds must be a non-empty subset of {', '.join(ERROR_KINDS)}; "
                f"unknown: {', '.join(unknown) or 'none given'}"
            )

    @property
    def model_name(self) -> str:
        """A teacher id for provenance (and the teacher store's keys) that says what produced
        the data: every setting that changes an output is in it."""
        extra = ""
        if self.error_kinds != ERROR_KINDS:
            extra += f",error_kinds={'+'.join(self.error_kinds)}"
        if self.unparseable_rate:
            extra += f",unparseable_rate={self.unparseable_rate}"
        return (
            f"simulated-arith(error_rate={self.error_rate},"
            f"verdict_agreement={self.verdict_agreement},"
            f"uncertain_rate={self.uncertain_rate}{extra},seed={self.seed})"
        )


@dataclass(frozen=True)
class SimulatedCoT:
    text: str  # the raw teacher output
    answer: str | None  # canonical label of the equation it ends with; None: unparseable
    correct: bool  # False for an unparseable chain (it answers nothing)
    error: str | None  # one of ERROR_KINDS for a wrong chain, "unparseable", or None


@dataclass(frozen=True)
class SimulatedSelfEvaluation:
    text: str
    verdict: Verdict | None  # None: the result line is missing (unparseable)
    truth: Verdict  # CORRECT or WRONG: what the reasoning really is


# ----- shared helpers -----------------------------------------------------------------------
_TASK = get_task("arith")
_OP_NOUN = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
_OP_VERB = {"+": "adds", "-": "subtracts", "*": "multiplies", "/": "divides"}
# The confusions an LLM makes on word problems: the "other" operation of a pair first.
_CONFUSIONS = {"+": ("-", "*"), "-": ("+",), "*": ("+", "/"), "/": ("*", "-")}
_NUMBER = re.compile(r"\d+")


def _rng(*parts: object) -> random.Random:
    # hashlib, not hash(): str hashes are salted per process and would break reruns.
    key = "\x1f".join(str(part) for part in parts)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return random.Random(seed)  # noqa: S311 (a simulation, not a secret)


def _gold(example: Example, gold: str | None) -> Node:
    text = gold if gold is not None else example.label
    if text is None:
        raise SimulatedTeacherError(
            f"example {example.id!r} has no label: the simulated teacher needs the gold equation"
        )
    try:
        return parse_equation(text)
    except TaskDataError as error:
        raise SimulatedTeacherError(f"example {example.id!r}: {error}") from None


def _num(value: Fraction) -> str:
    return format_number(value)


def _unit(question: str) -> str:
    """The thing the question counts ("apples"), for the rationale's wording."""
    match = re.search(r"How many (?:more |fewer )?(\w+)", question)
    if match:
        return match.group(1)
    return "dollars" if "How much money" in question else ""


def _question_numbers(question: str) -> list[Fraction]:
    return [Fraction(number) for number in _NUMBER.findall(question)]


# ----- chains of thought --------------------------------------------------------------------
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


def _steps(node: Node, slip: tuple[int, Fraction] | None) -> tuple[list[tuple], Node]:
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


def _rationale(steps: list[tuple], unit: str, rng: random.Random) -> str:
    u = f" {unit}" if unit else ""
    sentences = []
    for index, (a, op, b, result) in enumerate(steps):
        phrase = rng.choice(_STEP_PHRASES[op]).format(a=_num(a), b=_num(b), r=_num(result), u=u)
        if len(steps) > 1:
            lead = rng.choice(_FIRST) if index == 0 else rng.choice(_THEN)
            phrase = lead + (phrase[0].lower() + phrase[1:] if lead else phrase)
        sentences.append(phrase)
    return " ".join(sentences)


def _value_differs(candidate: Node, gold_value: Fraction) -> bool:
    try:
        return equation_value(candidate) != gold_value
    except ArithmeticParseError:  # divides by zero
        return False


def _prefer_positive(candidates: list[Node]) -> list[Node]:
    # LLM slips on these problems rarely go negative ("5 - 12"); keep those for when nothing
    # else is left.
    positive = [c for c in candidates if all(step[3] > 0 for step in _steps(c, None)[0])]
    return positive or candidates


def _replace(node: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    assert isinstance(node, BinOp)
    if path[0] == 0:
        return BinOp(node.op, _replace(node.left, path[1:], new), node.right)
    return BinOp(node.op, node.left, _replace(node.right, path[1:], new))


def _paths(node: Node, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Node]]:
    out = [(path, node)]
    if isinstance(node, BinOp):
        out += _paths(node.left, (*path, 0)) + _paths(node.right, (*path, 1))
    return out


def _operation_swaps(gold: Node) -> list[tuple[Node, str, str]]:
    """Each tree with one operation replaced by a confusable one: (tree, old op, new op)."""
    return [
        (_replace(gold, path, BinOp(alt, node.left, node.right)), node.op, alt)
        for path, node in _paths(gold)
        if isinstance(node, BinOp)
        for alt in _CONFUSIONS[node.op]
    ]


def _wrong_operation(gold: Node) -> list[Node]:
    return [tree for tree, _, _ in _operation_swaps(gold)]


def _dropped_number(gold: Node) -> list[Node]:
    # Keep one operand of an operation whose other side holds a further operation: the
    # answer then forgets a number ("(8 * 5)" for "(8 * 5) + 6"). A one-step problem has no
    # number to drop without leaving a bare number, which LLMs rarely answer.
    candidates = []
    for path, node in _paths(gold):
        if not isinstance(node, BinOp):
            continue
        for keep, other in ((node.left, node.right), (node.right, node.left)):
            candidate = _replace(gold, path, keep)
            if (isinstance(keep, BinOp) or isinstance(other, BinOp)) and equation_ops(candidate):
                candidates.append(candidate)
    return candidates


def _swapped_number(gold: Node, question: str) -> list[Node]:
    candidates = []
    paths = _paths(gold)
    for path, node in paths:  # operands reversed: "6 / 48" for "48 / 6"
        if isinstance(node, BinOp) and node.op in "-/":
            candidates.append(_replace(gold, path, BinOp(node.op, node.right, node.left)))
    leaves = [(path, node) for path, node in paths if isinstance(node, Num)]
    for i, (path_i, leaf_i) in enumerate(leaves):  # numbers moved between steps
        for path_j, leaf_j in leaves[i + 1 :]:
            candidates.append(_replace(_replace(gold, path_i, leaf_j), path_j, leaf_i))
    used = set(equation_leaves(gold))
    distractors = [n for n in _question_numbers(question) if n not in used]
    for distractor in distractors:  # the distractor number used instead of the right one
        for path, _ in leaves:
            candidates.append(_replace(gold, path, Num(distractor)))
    return candidates


def _slip_candidates(gold: Node, rng: random.Random) -> list[tuple[int, Fraction]]:
    steps, _ = _steps(gold, None)
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


def simulate_cot(
    example: Example,
    sample_index: int,
    config: SimulatedTeacherConfig | None = None,
    *,
    gold: str | None = None,
) -> SimulatedCoT:
    """The ``sample_index``-th chain of thought for ``example`` (gold equation: its label)."""
    config = config or SimulatedTeacherConfig()
    gold_tree = _gold(example, gold)
    gold_value = equation_value(gold_tree)
    rng = _rng("cot", config.seed, example.question, sample_index)
    wrong = rng.random() < config.error_rate
    unit = _unit(example.question)

    error: str | None = None
    slip: tuple[int, Fraction] | None = None
    tree = gold_tree
    if wrong:
        options: dict[str, list[Node]] = {
            "wrong_operation": _wrong_operation(gold_tree),
            "dropped_number": _dropped_number(gold_tree),
            "swapped_number": _swapped_number(gold_tree, example.question),
        }
        options = {
            kind: _prefer_positive([c for c in found if _value_differs(c, gold_value)])
            for kind, found in options.items()
        }
        # A slip is always possible and always changes the value.
        applicable = [
            kind for kind in config.error_kinds if kind == "arithmetic_slip" or options[kind]
        ]
        if not applicable:  # e.g. only "dropped_number" asked for, on a one-step problem
            applicable = ["arithmetic_slip"]
        error = rng.choice(applicable)
        if error == "arithmetic_slip":
            slip = rng.choice(_slip_candidates(gold_tree, rng))
        else:
            tree = rng.choice(options[error])
    elif rng.random() < 0.3:
        # Right chains vary too: an LLM writes "5 + 12" as often as "12 + 5".
        tree = _commute_somewhere(gold_tree, rng)

    steps, answer_tree = _steps(tree, slip)
    rationale = _rationale(steps, unit, rng)
    if _unparseable("cot", config, example.question, sample_index):
        # The chain stops at its last result without the answer sentence.
        value = _num(equation_value(answer_tree))
        text = f"{rationale} So the result is {value}{f' {unit}' if unit else ''}."
        return SimulatedCoT(text=text, answer=None, correct=False, error="unparseable")
    text = f"{rationale} The answer is ({render_equation(answer_tree, teacher=True)}).".strip()
    answer = render_equation(answer_tree)
    correct = _TASK.is_correct(answer, render_equation(gold_tree))
    if correct == wrong:  # the construction above makes this impossible; never emit a lie
        raise AssertionError(f"simulated CoT for {example.id!r} came out {correct=}: {text}")
    return SimulatedCoT(text=text, answer=answer, correct=correct, error=error)


def _unparseable(kind: str, config: SimulatedTeacherConfig, *parts: object) -> bool:
    # Its own random stream, so the texts of parseable outputs do not depend on the rate.
    return bool(config.unparseable_rate) and (
        _rng("unparseable", kind, config.seed, *parts).random() < config.unparseable_rate
    )


def _commute_somewhere(tree: Node, rng: random.Random) -> Node:
    commutative = [(p, n) for p, n in _paths(tree) if isinstance(n, BinOp) and n.op in "+*"]
    if not commutative:
        return tree
    path, node = rng.choice(commutative)
    return _replace(tree, path, BinOp(node.op, node.right, node.left))


# ----- self-evaluations ---------------------------------------------------------------------
def _gold_sentence(gold: Node) -> str:
    equation = render_equation(gold, teacher=True)
    return f"The right equation is {equation} = {_num(equation_value(gold))}."


def _diagnose(reasoning_rationale: str, answer: str | None, gold: Node, question: str) -> str:
    """Why a chain of thought is wrong, read from its text the way a careful grader would."""
    if answer is None:
        return "The reasoning never states a final equation."
    for a, op, b, claimed in step_claims(reasoning_rationale):
        true_value = try_evaluate(f"{a} {op} {b}")
        if true_value is not None and not numbers_equal(true_value, Fraction(claimed)):
            return f"It says {a} {op} {b} = {claimed}, but {a} {op} {b} is {_num(true_value)}."
    tree = parse_equation(answer)
    leaves, gold_leaves = Counter(equation_leaves(tree)), Counter(equation_leaves(gold))
    in_question = set(_question_numbers(question))
    extra = leaves - gold_leaves
    missing = gold_leaves - leaves
    foreign = [n for n in extra if n not in in_question]
    if foreign:
        return f"It uses {_num(foreign[0])}, which is not one of the numbers in the problem."
    if missing:
        if extra:
            return (
                f"It uses {_num(next(iter(extra)))} where the problem needs "
                f"{_num(next(iter(missing)))}."
            )
        return f"It leaves out the {_num(next(iter(missing)))} from the problem."
    if extra:
        return f"It uses {_num(next(iter(extra)))}, which the question does not need."
    ops, gold_ops = equation_ops(tree), equation_ops(gold)
    if Counter(ops) != Counter(gold_ops):
        wrong = next(op for op in ops if op not in gold_ops or ops.count(op) > gold_ops.count(op))
        right = next(op for op in gold_ops if op not in ops or gold_ops.count(op) > ops.count(op))
        return f"It {_OP_VERB[wrong]} where the problem calls for {_OP_NOUN[right]}."
    return "It combines the right numbers in the wrong order."


def _evaluation_rationale(
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
    value_text = _num(value) if value is not None else "nothing"
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
    swaps = [swap for swap in _operation_swaps(gold) if _value_differs(swap[0], gold_value)]
    if not swaps:
        return f"The equation {equation} = {value_text} does not seem to use every step."
    alternative, old, new = rng.choice(swaps)
    return (
        f"The problem seems to call for {_OP_NOUN[new]} rather than {_OP_NOUN[old]}. "
        f"The equation should be {render_equation(alternative, teacher=True)} = "
        f"{_num(equation_value(alternative))}."
    )


def simulate_self_evaluation(
    example: Example,
    reasoning: str,
    sample_index: int,
    config: SimulatedTeacherConfig | None = None,
    *,
    gold: str | None = None,
) -> SimulatedSelfEvaluation:
    """The ``sample_index``-th self-evaluation of ``reasoning`` (a chain of thought) for
    ``example``. The truth is judged by value against the gold equation; the reasoning may
    come from any teacher, not only :func:`simulate_cot`."""
    config = config or SimulatedTeacherConfig()
    gold_tree = _gold(example, gold)
    rationale, answer = _TASK.split_cot(reasoning, example)
    truth = (
        Verdict.CORRECT if _TASK.is_correct(answer, render_equation(gold_tree)) else Verdict.WRONG
    )
    digest = hashlib.sha256(reasoning.encode()).hexdigest()
    rng = _rng("eval", config.seed, example.question, digest, sample_index)
    draw = rng.random()
    if draw < config.uncertain_rate:
        verdict = Verdict.UNCERTAIN
    elif draw < config.uncertain_rate + config.verdict_agreement:
        verdict = truth
    else:
        verdict = Verdict.WRONG if truth is Verdict.CORRECT else Verdict.CORRECT
    body = _evaluation_rationale(
        verdict, truth, rationale, answer, gold_tree, example.question, rng
    )
    if _unparseable("eval", config, example.question, digest, sample_index):
        return SimulatedSelfEvaluation(text=f"Evaluation:\n{body}", verdict=None, truth=truth)
    text = f"Evaluation:\n{body}\n\n{verdict_sentence(verdict)}"
    return SimulatedSelfEvaluation(text=text, verdict=verdict, truth=truth)


class SimulatedTeacher:
    """The simulator behind one settings object: what a teacher backend will wrap."""

    def __init__(self, config: SimulatedTeacherConfig | None = None) -> None:
        self.config = config or SimulatedTeacherConfig()

    @property
    def model_name(self) -> str:
        return self.config.model_name

    def cots(self, example: Example, count: int, start: int = 0) -> list[SimulatedCoT]:
        """Samples ``start .. start + count - 1``; sample k is the same whatever the batch."""
        return [simulate_cot(example, start + k, self.config) for k in range(count)]

    def self_evaluations(
        self, example: Example, reasoning: str, count: int, start: int = 0
    ) -> list[SimulatedSelfEvaluation]:
        return [
            simulate_self_evaluation(example, reasoning, start + k, self.config)
            for k in range(count)
        ]


def realized_rates(
    cots: Sequence[SimulatedCoT], evaluations: Sequence[SimulatedSelfEvaluation]
) -> dict[str, float]:
    """Observed error rate, verdict agreement and uncertain rate (over the parseable outputs,
    as the settings define them) and the unparseable share, for reports and tests."""
    rates: dict[str, float] = {}
    parsed_cots = [c for c in cots if c.answer is not None]
    if parsed_cots:
        rates["error_rate"] = sum(not c.correct for c in parsed_cots) / len(parsed_cots)
    parsed_evaluations = [e for e in evaluations if e.verdict is not None]
    if parsed_evaluations:
        count = len(parsed_evaluations)
        rates["verdict_agreement"] = sum(e.verdict == e.truth for e in parsed_evaluations) / count
        rates["uncertain_rate"] = (
            sum(e.verdict is Verdict.UNCERTAIN for e in parsed_evaluations) / count
        )
    outputs = [*cots, *evaluations]
    if outputs:
        unparsed = len(cots) - len(parsed_cots) + len(evaluations) - len(parsed_evaluations)
        rates["unparseable_rate"] = unparsed / len(outputs)
    return rates


def simulated_distillation_set(
    examples: Sequence[Example],
    n_cots: int,
    n_self_evals: int,
    config: SimulatedTeacherConfig | None = None,
    *,
    evaluate_unparsed: bool = False,
) -> list[DistillationRecord]:
    """The distillation set ``mindmirror teach run --teacher simulated`` exports for these
    ``arith`` examples, made in memory: the same texts under the same sample indices (CoT k,
    self-evaluation ``k * M + j`` of CoT k), the same records, the same teacher name. As in a
    teacher run, a chain of thought without a final equation gets no self-evaluations unless
    ``evaluate_unparsed``. For tests, benchmarks and experiments that need data in seconds."""
    if n_cots < 1 or n_self_evals < 0:
        raise SimulatedTeacherError(
            f"need at least one chain of thought and no negative count of self-evaluations, "
            f"got {n_cots} and {n_self_evals}"
        )
    teacher = SimulatedTeacher(config)
    records = []
    for example in examples:
        cots = []
        for index, simulated in enumerate(teacher.cots(example, n_cots)):
            cot = cot_from_text(_TASK, simulated.text, example)
            if n_self_evals and (evaluate_unparsed or cot.answer is not None):
                reasoning = _TASK.trim_completion(simulated.text)
                cot.self_evaluations = [
                    self_evaluation_from_text(evaluation.text)
                    for evaluation in teacher.self_evaluations(
                        example, reasoning, n_self_evals, start=index * n_self_evals
                    )
                ]
            cots.append(cot)
        records.append(
            DistillationRecord(
                id=example.id,
                task=_TASK.name,
                question=example.question,
                label=example.label,
                fields=example.fields,
                teacher=teacher.model_name,
                cots=cots,
            )
        )
    return records
