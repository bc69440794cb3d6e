from __future__ import annotations

import pytest
from mindmirror.service.selfconsistency import Candidate, aggregate
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks.base import RationaleCheck

C, W, U = Verdict.CORRECT, Verdict.WRONG, Verdict.UNCERTAIN


def cand(answer: float | None, verdict: Verdict | None, label: str | None = None) -> Candidate:
    label = label or (None if answer is None else f"eq{answer}")
    return Candidate(label or "?", label, answer, f"because {answer}", verdict)


def test_vote_weights_answers_by_verdict() -> None:
    # 7 has more samples but the student judges them wrong; 9 wins on verdicts.
    candidates = [cand(7.0, W), cand(7.0, W), cand(7.0, U), cand(9.0, C), cand(9.0, C)]
    decision = aggregate(candidates, "vote")
    assert candidates[decision.index].answer == 9.0
    assert decision.confidence == pytest.approx(2 / 5)
    assert decision.support == 2


def test_vote_groups_equal_values_and_returns_the_best_judged_sample() -> None:
    # "3 + 4" and "4 + 3" are the same SVAMP answer (value 7).
    candidates = [cand(7.0, U, "3 + 4"), cand(7.0, C, "4 + 3"), cand(5.0, C)]
    decision = aggregate(candidates, "vote")
    assert decision.index == 1  # the correct-judged one of the winning answer
    assert decision.confidence == pytest.approx(1.5 / 3)


def test_vote_falls_back_to_plain_majority_when_everything_is_judged_wrong() -> None:
    candidates = [cand(1.0, W), cand(2.0, W), cand(2.0, W)]
    decision = aggregate(candidates, "vote")
    assert candidates[decision.index].answer == 2.0
    assert decision.confidence == 0.0
    assert decision.support == 2


def test_ties_go_to_more_samples_then_the_earlier_sample() -> None:
    assert aggregate([cand(1.0, C), cand(2.0, U), cand(2.0, U)], "vote").index == 1
    assert aggregate([cand(1.0, C), cand(2.0, C)], "vote").index == 0


def test_best_takes_the_best_verdict_even_against_the_majority() -> None:
    candidates = [cand(7.0, U), cand(7.0, U), cand(7.0, U), cand(9.0, C)]
    assert aggregate(candidates, "vote").index == 0  # 1.5 > 1.0
    best = aggregate(candidates, "best")
    assert best.index == 3
    assert best.confidence == pytest.approx(1 / 4)


def test_unparseable_labels_never_win_unless_nothing_parsed() -> None:
    candidates = [cand(None, C), cand(None, C), cand(3.0, U)]
    decision = aggregate(candidates, "vote")
    assert decision.index == 2
    nothing = aggregate([cand(None, C), cand(None, W)], "vote")
    assert nothing.index == 0
    assert nothing.confidence == 0.0


def test_unscored_is_plain_self_consistency() -> None:
    candidates = [cand(1.0, W), cand(1.0, W), cand(2.0, C)]
    decision = aggregate(candidates, "vote", scored=False)
    assert candidates[decision.index].answer == 1.0
    assert decision.confidence == pytest.approx(2 / 3)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        aggregate([])
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([cand(1.0, C)], "median")  # type: ignore[arg-type]


# ----- the rationale check ------------------------------------------------------------------
def checked(answer: float, verdict: Verdict | None, consistent: bool | None) -> Candidate:
    candidate = cand(answer, verdict)
    return Candidate(
        candidate.label_text,
        candidate.label,
        candidate.answer,
        candidate.rationale,
        verdict,
        RationaleCheck(consistent, reason="" if consistent else "because"),
    )


def test_an_inconsistent_sample_counts_half() -> None:
    # Three samples say 7 but their rationales do not support it: 1.5 against 2 for 9.
    candidates = [checked(7.0, C, False)] * 3 + [checked(9.0, C, True)] * 2
    decision = aggregate(candidates, "vote")
    assert candidates[decision.index].answer == 9.0
    assert decision.confidence == pytest.approx(2 / 5)
    # Unchecked (None) weighs as consistent: the vote is the verdicts' alone.
    unchecked = [checked(7.0, C, None)] * 3 + [checked(9.0, C, True)] * 2
    assert aggregate(unchecked, "vote").confidence == pytest.approx(3 / 5)
    # Without self-evaluation consistency still weighs.
    assert aggregate(candidates, "vote", scored=False).confidence == pytest.approx(2 / 5)


def test_the_winning_answer_returns_a_consistent_sample_first() -> None:
    candidates = [
        checked(7.0, C, False),
        checked(7.0, U, None),
        checked(7.0, U, True),
        checked(5.0, U, True),
    ]
    assert aggregate(candidates, "vote").index == 2  # over a better-judged inconsistent one
    assert aggregate(candidates[:2], "vote").index == 1  # unchecked before inconsistent
    assert aggregate(candidates[:1] * 2, "vote").index == 0  # earliest when all are alike
    assert candidates[0].consistent is False
    assert cand(1.0, C).consistent is None
