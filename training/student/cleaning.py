"""The teacher's own outputs clean stage 2's data: three rules, each with one home here.

The paper only *trains* on the teacher's self-evaluations (stage 1). These rules also use them,
and the agreement between the teacher's chains, to decide what stage 2 trains on. All are off
by default, so ``mindmirror distill`` keeps the paper's setting (each CoT paired with its own
answer) unless asked; :func:`~mindmirror.training.student.examples.build_cot_pairs` applies
them in the order below, after the checks that make a CoT usable at all (a parsed answer where
one is needed, a rationale).

1. **Drop judged-wrong CoTs** (:func:`judged_wrong`). Among a CoT's first M parsed verdicts, the
   CoT is dropped when more say ``wrong`` than ``correct``. ``uncertain`` verdicts abstain, and
   a tie (including no parsed verdict at all) keeps the CoT: only what the teacher judged wrong
   is dropped, and a tie is no judgement.
2. **Majority pseudo-labels** (:func:`majority_label`). Every CoT of a question is trained on the
   question's vote: the chains with a parsed answer vote, answers equal by the task's rule
   (``(84 / 2)`` and ``84/2``) vote together. With rule 1 on, the chains it drops do not vote.
   ``weighted`` gives each chain the weight of its share of ``correct`` verdicts among its
   first M parsed ones (``uncertain`` counts as not ``correct``; no parsed verdict weighs 0).
   The vote counts all N chains of the question, even under ``--num-cots K``, which only
   limits the rationales trained on: the label is the question's, best estimated from every
   sample. Ties: the larger weight, then the more chains, then the answer seen first.
3. **Keep only agreeing CoTs** (:func:`agrees`): a CoT is trained only if its own answer equals
   the label of its pair (the human label or the majority one), so no rationale argues for an
   answer other than its label. Meaningless with the teacher's own labels (each agrees with
   itself), so it is refused there.

A question all of whose CoTs are dropped gives stage 2 no pair (it is counted: the student is
not trained on a chain the teacher itself rejected), while stage 1 still trains on its
self-evaluations: judged-wrong chains are exactly what self-evaluation learns from.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from mindmirror.student.bundle import LabelSource
from mindmirror.student.distillation import DistillationRecord, TeacherCoT
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks import Task

__all__ = [
    "MAJORITY_SOURCES",
    "agrees",
    "check_rules",
    "correct_share",
    "judged_wrong",
    "majority_label",
    "verdict_tally",
]

#: the label sources that take a question's vote (rule 2)
MAJORITY_SOURCES: tuple[LabelSource, ...] = ("majority", "weighted-majority")


def check_rules(label_source: str, drop_disagreeing: bool) -> None:
    """Refuse a label source we do not know, and the agreement filter with teacher labels."""
    known = ("teacher", *MAJORITY_SOURCES, "human")
    if label_source not in known:
        raise ValueError(f"label_source must be one of {', '.join(known)}, not {label_source!r}")
    if drop_disagreeing and label_source == "teacher":
        raise ValueError(
            "dropping CoTs that disagree with their label needs the human or a majority label: "
            "with the teacher's labels every CoT is labelled with its own answer"
        )


def verdict_tally(cot: TeacherCoT, num_self_evaluations: int | None = None) -> Counter[Verdict]:
    """The parsed verdicts among the CoT's first ``num_self_evaluations`` (all when None)."""
    return Counter(
        evaluation.verdict
        for evaluation in cot.self_evaluations[:num_self_evaluations]
        if evaluation.verdict is not None
    )


def judged_wrong(cot: TeacherCoT, num_self_evaluations: int | None = None) -> bool:
    """Rule 1: more ``wrong`` than ``correct`` verdicts (``uncertain`` abstains, ties keep)."""
    tally = verdict_tally(cot, num_self_evaluations)
    return tally[Verdict.WRONG] > tally[Verdict.CORRECT]


def correct_share(cot: TeacherCoT, num_self_evaluations: int | None = None) -> Fraction:
    """A CoT's weight in the weighted vote: the share of its parsed verdicts that say
    ``correct`` (0 without any). A fraction, so that equal sums tie exactly (1/3 + 1/3 is 2/3,
    where floats may differ in the last bit and break a tie by rounding)."""
    tally = verdict_tally(cot, num_self_evaluations)
    total = sum(tally.values())
    return Fraction(tally[Verdict.CORRECT], total) if total else Fraction(0)


def majority_label(
    task: Task,
    record: DistillationRecord,
    *,
    weighted: bool = False,
    drop_judged_wrong: bool = False,
    num_self_evaluations: int | None = None,
) -> str | None:
    """Rule 2: the question's vote over its chains' parsed answers (``None``: no chain voted).

    Plain: each chain one vote, ties to the answer seen first. ``weighted``: each chain its
    :func:`correct_share`, ties to the more chains, then to the answer seen first. With
    ``drop_judged_wrong`` the chains rule 1 drops do not vote.
    """
    # (representative answer, weight, chains), in the order the answers first appear
    groups: list[tuple[str, Fraction, int]] = []
    for cot in record.cots:
        answer = cot.answer
        if answer is None or (drop_judged_wrong and judged_wrong(cot, num_self_evaluations)):
            continue
        weight = correct_share(cot, num_self_evaluations) if weighted else Fraction(1)
        for position, (representative, total, chains) in enumerate(groups):
            if task.is_correct(answer, representative):
                groups[position] = (representative, total + weight, chains + 1)
                break
        else:
            groups.append((answer, weight, 1))
    if not groups:
        return None
    # max keeps the first of equal keys: the answer seen first wins what is left of a tie
    return max(groups, key=lambda group: (group[1], group[2]))[0]


def agrees(task: Task, cot: TeacherCoT, label: str) -> bool:
    """Rule 3: the CoT's own answer is its pair's label, by the task's rule."""
    return task.is_correct(cot.answer, label)
