"""A small templated distillation set from a simulated teacher (SVAMP-shaped), for offline
smoke runs, tests and measurements.

Each question is a one-step word problem (add, take away, or equal groups). The simulated
teacher writes N chains of thought per question, right with probability
``teacher_accuracy`` and otherwise using a plausible wrong operation, and M self-evaluations
per chain of thought that mostly (not always) recognise which it is. A small share of CoTs
and self-evaluations has no parseable answer/verdict, like a real teacher's output. Labels
are exact, so accuracy can be measured; the task is learnable by a tiny student in minutes.
"""

from __future__ import annotations

import random

from student.distillation import DistillationRecord, cot_from_text, self_evaluation_from_text
from student.tasks import get_task

__all__ = ["synthetic_distillation_set"]

_NAMES = ("Tom", "Ana", "Li", "Sam", "Eva", "Raj", "Mia", "Ben")
_THINGS = ("apples", "books", "coins", "cards", "shells", "pens")

# kind -> (question template, right operator, wrong operator, cue word, reason)
_KINDS = {
    "gain": (
        "{n} has {a} {t}. {n} finds {b} more {t}.\nHow many {t} does {n} have now?",
        "+",
        "-",
        "finds more",
        "finding more {t} adds to what {n} had",
    ),
    "loss": (
        "{n} has {a} {t}. {n} gives {b} {t} to a friend.\nHow many {t} does {n} have now?",
        "-",
        "+",
        "gives away",
        "giving {t} away takes them from what {n} had",
    ),
    "groups": (
        "{n} has {a} boxes with {b} {t} in each box.\nHow many {t} does {n} have in all?",
        "*",
        "+",
        "equal boxes",
        "equal boxes mean the number in each box is taken once per box",
    ),
}
_WORDS = {"+": "adds", "-": "subtracts", "*": "multiplies"}


def _value(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def synthetic_distillation_set(
    count: int,
    *,
    num_cots: int = 3,
    num_self_evaluations: int = 2,
    teacher_accuracy: float = 0.75,
    verdict_accuracy: float = 0.9,
    unparseable_rate: float = 0.05,
    seed: int = 0,
    id_prefix: str = "syn",
) -> list[DistillationRecord]:
    """``count`` records, each with ``num_cots`` CoTs and ``num_self_evaluations`` each."""
    task = get_task("svamp")
    rng = random.Random(seed)  # noqa: S311 (reproducible data, not crypto)
    records = []
    for index in range(count):
        kind = rng.choice(list(_KINDS))
        template, right, wrong, cue, reason = _KINDS[kind]
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        a = rng.randint(3, 9) if kind == "groups" else rng.randint(12, 60)
        b = rng.randint(2, 9)
        question = template.format(n=name, t=thing, a=a, b=b)
        label = f"{a} {right} {b}"
        cots = []
        for _ in range(num_cots):
            op = right if rng.random() < teacher_accuracy else wrong
            steps = (
                f"The question says {name} {cue}. The answer {_WORDS[op]} {a} and {b}: "
                f"{a} {op} {b} = {_value(a, op, b)}."
            )
            if rng.random() < unparseable_rate:
                text = f"{steps} So {name} has {_value(a, op, b)} {thing}."  # no answer sentence
            else:
                text = f"{steps} The answer is ({a} {op} {b})."
            cot = cot_from_text(task, text)
            evaluations = []
            for _ in range(num_self_evaluations):
                judged_right = op == right
                if rng.random() >= verdict_accuracy:
                    verdict = "uncertain"
                    body = f"It is not clear whether {name} ends with more or fewer {thing}."
                elif judged_right:
                    verdict = "correct"
                    because = reason.format(n=name, t=thing)
                    body = f"The answer {_WORDS[op]} the numbers, and {because}."
                else:
                    verdict = "wrong"
                    body = (
                        f"The answer {_WORDS[op]} the numbers, but "
                        f"{reason.format(n=name, t=thing)}; "
                        f"it should be {a} {right} {b}."
                    )
                if rng.random() < unparseable_rate:
                    raw = f"Evaluation:\n{body}"  # the teacher forgot the result line
                else:
                    raw = (
                        f"Evaluation:\n{body}\n\nEvaluation result: the given answer is {verdict}."
                    )
                evaluations.append(self_evaluation_from_text(raw))
            cot.self_evaluations = evaluations
            cots.append(cot)
        records.append(
            DistillationRecord(
                id=f"{id_prefix}-{index}",
                task="svamp",
                question=question,
                label=task.normalize_label(label),
                teacher="simulated teacher (training.student.synthetic)",
                cots=cots,
            )
        )
    return records
