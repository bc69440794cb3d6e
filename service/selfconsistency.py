"""Self-consistency guided by the student's own distilled self-evaluation (``/v1/explain`` with
``num_samples`` > 1). Beyond the paper, which uses the self-evaluation only as a training signal.

Each of the K samples is a candidate: a label (from the ``predict:`` input) and a rationale (from
the ``explain:`` input), sample 0 greedy and the others sampled. The student then judges each
candidate's chain of thought (rationale + the task's answer sentence) with its stage-1 input,
``predict: evaluate: <question>\\nreasoning: <chain of thought>``, giving a scored verdict
(:mod:`mindmirror.student.verdict_scores`).

A candidate weighs its **score**: the student's calibrated probability that its reasoning is
right (so a sample the student is sure of counts more than one it hesitates on). A candidate
with a verdict but no score (a caller that has only the word) weighs ``correct`` 1,
``uncertain`` (or no readable verdict) 0.5, ``wrong`` 0. The task's rationale check
(``Task.check_rationale``: does the rationale support the label?) multiplies that weight: a
consistent candidate, or one the task cannot check, keeps it; an inconsistent one counts half,
since its label and rationale disagree and at most one of them can be right. Candidates are
grouped by the task's answer (SVAMP: the equation's value, so ``3 + 4`` and ``4 + 3`` agree).
Then:

* ``vote``: the answer with the largest summed weight wins; ties go to the answer more samples
  gave, then to the one sampled first. If every candidate was judged wrong (all weights 0), the
  plain majority wins.
* ``best``: the single candidate with the best verdict wins; ties go to the candidate whose
  answer has more weight, then more samples, then the earlier sample.

The sample returned for the winning answer is a consistent one when there is one (then one the
task cannot check, then an inconsistent one), among those the best judged, then the earliest.

``confidence`` is the winning answer's summed weight divided by K: the share of samples that
gave this answer, weighed by how sure the student is that each is right (inconsistent ones
counting half). 1.0 means all K samples agree, the student is sure of each and every
rationale supports the answer. Without self-evaluation in the bundle every verdict weight is 1
and this is ordinary self-consistency weighed by consistency (the confidence is the agreement
share when every rationale is consistent). Unparseable labels never win unless nothing parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mindmirror.student.formats import Verdict
from mindmirror.student.tasks.base import RationaleCheck

__all__ = ["CONSISTENCY_WEIGHTS", "VERDICT_WEIGHTS", "Candidate", "Decision", "aggregate"]

VERDICT_WEIGHTS: dict[Verdict | None, float] = {
    Verdict.CORRECT: 1.0,
    Verdict.UNCERTAIN: 0.5,
    None: 0.5,
    Verdict.WRONG: 0.0,
}

#: what a candidate's rationale check (``consistent``) multiplies its weight by
CONSISTENCY_WEIGHTS: dict[bool | None, float] = {True: 1.0, None: 1.0, False: 0.5}
#: which sample of the winning answer is returned first: consistent, unchecked, inconsistent
_CONSISTENCY_RANK: dict[bool | None, int] = {True: 2, None: 1, False: 0}


@dataclass(frozen=True)
class Candidate:
    label_text: str  # what the student generated
    label: str | None  # the task's normalized label, None when unparseable
    answer: Any  # the task's answer value (SVAMP: float), None when unparseable
    rationale: str
    verdict: Verdict | None = None
    check: RationaleCheck | None = None  # whether the rationale supports the label
    #: the student's calibrated probability that this candidate's reasoning is right
    score: float | None = None

    @property
    def consistent(self) -> bool | None:
        """The rationale check's answer; ``None`` when unchecked."""
        return None if self.check is None else self.check.consistent

    @property
    def valid(self) -> bool:
        """Whether the label parses as an answer of the task."""
        return self.label is not None

    @property
    def key(self) -> Any:
        """What candidates that agree share: the answer value, else the normalized label."""
        if self.answer is not None:
            return round(self.answer, 9) if isinstance(self.answer, float) else self.answer
        return self.label


@dataclass(frozen=True)
class Decision:
    index: int  # the candidate whose label and rationale are returned
    confidence: float
    support: int  # samples that gave the winning answer


def aggregate(
    candidates: Sequence[Candidate],
    method: Literal["vote", "best"] = "vote",
    scored: bool = True,
) -> Decision:
    """Pick the answer (see the module docstring); ``scored=False`` ignores verdicts."""
    if not candidates:
        raise ValueError("no candidates to aggregate")
    total = len(candidates)

    def weight(candidate: Candidate) -> float:
        if not scored:
            verdict = 1.0
        elif candidate.score is not None:
            verdict = candidate.score
        else:
            verdict = VERDICT_WEIGHTS[candidate.verdict]
        return verdict * CONSISTENCY_WEIGHTS[candidate.consistent]

    scores: dict[Any, float] = {}
    counts: dict[Any, int] = {}
    first: dict[Any, int] = {}
    for index, candidate in enumerate(candidates):
        if candidate.key is None:
            continue
        scores[candidate.key] = scores.get(candidate.key, 0.0) + weight(candidate)
        counts[candidate.key] = counts.get(candidate.key, 0) + 1
        first.setdefault(candidate.key, index)
    if not scores:
        return Decision(index=0, confidence=0.0, support=0)

    if method == "best":
        best = max(
            (i for i, c in enumerate(candidates) if c.key is not None),
            key=lambda i: (
                weight(candidates[i]),
                scores[candidates[i].key],
                counts[candidates[i].key],
                -i,
            ),
        )
        winner = candidates[best].key
    elif method == "vote":
        if any(score > 0 for score in scores.values()):
            winner = max(scores, key=lambda k: (scores[k], counts[k], -first[k]))
        else:
            winner = max(counts, key=lambda k: (counts[k], -first[k]))
    else:
        raise ValueError(f"unknown aggregation {method!r}")

    # Return the winning answer's consistent (else unchecked), best-judged, earliest sample.
    index = max(
        (i for i, c in enumerate(candidates) if c.key == winner),
        key=lambda i: (_CONSISTENCY_RANK[candidates[i].consistent], weight(candidates[i]), -i),
    )
    return Decision(index=index, confidence=scores[winner] / total, support=counts[winner])
