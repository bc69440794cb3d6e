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
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mindmirror.student.arithmetic import Node, format_number
from mindmirror.student.distillation import (
    DistillationRecord,
    cot_from_text,
    self_evaluation_from_text,
)
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import Verdict, verdict_sentence
from mindmirror.student.tasks import Example, TaskDataError, get_task
from mindmirror.student.tasks.arith import (
    equation_value,
    parse_equation,
    render_equation,
)
from mindmirror.training.teacher.simulated_grading import evaluation_rationale
from mindmirror.training.teacher.simulated_reasoning import (
    commute_somewhere,
    computation_steps,
    dropped_numbers,
    prefer_positive,
    question_unit,
    slip_candidates,
    swapped_numbers,
    value_differs,
    write_rationale,
    wrong_operations,
)

__all__ = [
    "ERROR_KINDS",
    "SimulatedCoT",
    "SimulatedSelfEvaluation",
    "SimulatedTeacher",
    "SimulatedTeacherConfig",
    "SimulatedTeacherError",
    "realized_rates",
    "reasonings_of_known_truth",
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


# ----- chains of thought (wording and mistakes: simulated_reasoning) -------------------------
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
    unit = question_unit(example.question)

    error: str | None = None
    slip: tuple[int, Fraction] | None = None
    tree = gold_tree
    if wrong:
        options: dict[str, list[Node]] = {
            "wrong_operation": wrong_operations(gold_tree),
            "dropped_number": dropped_numbers(gold_tree),
            "swapped_number": swapped_numbers(gold_tree, example.question),
        }
        options = {
            kind: prefer_positive([c for c in found if value_differs(c, gold_value)])
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
            slip = rng.choice(slip_candidates(gold_tree, rng))
        else:
            tree = rng.choice(options[error])
    elif rng.random() < 0.3:
        # Right chains vary too: an LLM writes "5 + 12" as often as "12 + 5".
        tree = commute_somewhere(gold_tree, rng)

    steps, answer_tree = computation_steps(tree, slip)
    rationale = write_rationale(steps, unit, rng)
    if _unparseable("cot", config, example.question, sample_index):
        # The chain stops at its last result without the answer sentence.
        value = format_number(equation_value(answer_tree))
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


# ----- self-evaluations (what they say: simulated_grading) ----------------------------------
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
    body = evaluation_rationale(verdict, truth, rationale, answer, gold_tree, example.question, rng)
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


def reasonings_of_known_truth(
    examples: Sequence[Example],
    per_example: int = 2,
    *,
    seed: int = 1_000_003,
    error_rate: float = 0.5,
) -> list[tuple[Example, str, bool]]:
    """(example, chain of thought, whether it is right) from a simulated teacher with a seed of
    its own (none of these texts was trained on, whatever seed the training data used) and
    about ``error_rate`` of them wrong: what the self-evaluation benchmark and the demo judge
    the student's verdicts on. The examples need their gold equations as labels."""
    config = SimulatedTeacherConfig(error_rate=error_rate, seed=seed)
    return [
        (example, cot.text, cot.correct)
        for example in examples
        for cot in (simulate_cot(example, k, config) for k in range(per_example))
    ]
