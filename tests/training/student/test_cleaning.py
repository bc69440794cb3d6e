"""The cleaning rules, each on hand-built chains of thought with known verdicts."""

from fractions import Fraction

import pytest
from mindmirror.student.distillation import DistillationRecord, SelfEvaluation, TeacherCoT
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks import get_task
from mindmirror.training.student.cleaning import (
    agrees,
    check_rules,
    correct_share,
    judged_wrong,
    majority_label,
)

SVAMP = get_task("svamp")
C, W, U = Verdict.CORRECT, Verdict.WRONG, Verdict.UNCERTAIN


def cot(answer: str | None, *verdicts: Verdict | None) -> TeacherCoT:
    """A chain with this answer and one self-evaluation per verdict (``None``: unparseable)."""
    evaluations = [SelfEvaluation(text="", rationale="r", verdict=v) for v in verdicts]
    return TeacherCoT(text="", rationale="because", answer=answer, self_evaluations=evaluations)


def record(*cots: TeacherCoT) -> DistillationRecord:
    return DistillationRecord(id="q", task="svamp", question="q", cots=list(cots))


@pytest.mark.parametrize(
    ("verdicts", "wrong"),
    [
        ((W,), True),
        ((W, U), True),  # uncertain abstains: one wrong against no correct
        ((C, W), False),  # a tie keeps the chain
        ((U, U), False),  # no judgement at all keeps it
        ((), False),  # nor does no self-evaluation
        ((W, None), True),  # an unparseable verdict does not count
        ((C, W, W), True),
    ],
)
def test_judged_wrong_is_a_strict_majority_of_wrong_over_correct(
    verdicts: tuple[Verdict | None, ...], wrong: bool
) -> None:
    assert judged_wrong(cot("1 + 1", *verdicts)) is wrong


def test_only_the_first_m_verdicts_judge() -> None:
    chain = cot("1 + 1", C, W, W)
    assert judged_wrong(chain)
    assert not judged_wrong(chain, num_self_evaluations=2)  # C, W: a tie
    assert correct_share(chain) == Fraction(1, 3)
    assert correct_share(chain, num_self_evaluations=1) == 1


def test_correct_share_counts_uncertain_as_not_correct() -> None:
    assert correct_share(cot("1", C, U)) == Fraction(1, 2)
    assert correct_share(cot("1", C, None)) == 1  # an unparseable verdict is not counted
    assert correct_share(cot("1")) == 0


def test_plain_majority_groups_equal_answers_and_ties_go_to_the_first() -> None:
    assert majority_label(SVAMP, record(cot("2 + 3"), cot("1 + 1"), cot("3 + 2"))) == "2 + 3"
    assert majority_label(SVAMP, record(cot("1 + 1"), cot("2 + 3"), cot("3 + 2"))) == "2 + 3"
    assert majority_label(SVAMP, record(cot("1 + 1"), cot("2 + 3"))) == "1 + 1"  # a tie
    assert majority_label(SVAMP, record(cot("2 + 3"), cot("1 + 1"))) == "2 + 3"
    assert majority_label(SVAMP, record(cot(None), cot("4 - 1"))) == "4 - 1"
    assert majority_label(SVAMP, record(cot(None), cot(None))) is None
    assert majority_label(SVAMP, record()) is None


def test_weighted_majority_follows_the_verdicts() -> None:
    judged = record(cot("1 + 1", W), cot("2 + 3", C))
    assert majority_label(SVAMP, judged) == "1 + 1"  # plain: a tie, the first
    assert majority_label(SVAMP, judged, weighted=True) == "2 + 3"
    # Two chains judged wrong outvote one judged right in a plain vote, not a weighted one.
    outvoted = record(cot("1 + 1", W), cot("1 + 1", U), cot("2 + 3", C, U))
    assert majority_label(SVAMP, outvoted) == "1 + 1"
    assert majority_label(SVAMP, outvoted, weighted=True) == "2 + 3"  # 0 against 1/2


def test_weighted_ties_go_to_more_chains_then_to_the_first() -> None:
    # 1/3 + 1/3 against 2/3: equal exactly (fractions), so the two chains win the tie.
    two = [cot("1 + 1", C, W, U), cot("1 + 1", C, W, U)]
    one = cot("2 + 3", C, C, W)
    assert majority_label(SVAMP, record(one, *two), weighted=True) == "1 + 1"
    # Equal weight and chains: the answer seen first.
    assert majority_label(SVAMP, record(cot("2 + 3", C), cot("1 + 1", C)), weighted=True) == (
        "2 + 3"
    )
    # No chain has a "correct" verdict: every weight is 0 and the count decides.
    unvouched = record(cot("1 + 1", W), cot("2 + 3", U), cot("3 + 2", W))
    assert majority_label(SVAMP, unvouched, weighted=True) == "2 + 3"


def test_judged_wrong_chains_do_not_vote_when_dropped() -> None:
    votes = record(cot("1 + 1", W), cot("1 + 1", W), cot("2 + 3", C))
    assert majority_label(SVAMP, votes) == "1 + 1"
    assert majority_label(SVAMP, votes, drop_judged_wrong=True) == "2 + 3"
    all_wrong = record(cot("1 + 1", W), cot("2 + 3", W, U))
    assert majority_label(SVAMP, all_wrong, drop_judged_wrong=True) is None


def test_agreement_is_the_tasks_equality() -> None:
    assert agrees(SVAMP, cot("( 3 + 2 )"), "2 + 3")
    assert not agrees(SVAMP, cot("3 - 2"), "2 + 3")
    assert not agrees(SVAMP, cot(None), "2 + 3")


def test_rules_refuse_what_cannot_apply() -> None:
    check_rules("human", drop_disagreeing=True)
    check_rules("weighted-majority", drop_disagreeing=True)
    with pytest.raises(ValueError, match="its own answer"):
        check_rules("teacher", drop_disagreeing=True)
    with pytest.raises(ValueError, match="label_source must be one of"):
        check_rules("gold", drop_disagreeing=False)
