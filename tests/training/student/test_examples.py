import pytest
from mindmirror.student.distillation import (
    DistillationRecord,
    SelfEvaluation,
    TeacherCoT,
    cot_from_text,
    self_evaluation_from_text,
)
from mindmirror.student.formats import Prefixes, Verdict
from mindmirror.student.tasks import get_task
from mindmirror.training.student.examples import (
    TrainingPair,
    build_cot_pairs,
    build_cot_validation,
    build_self_evaluation_pairs,
    cot_judge,
    split_records,
)

SVAMP = get_task("svamp")
Q1 = "Tom has 5 apples. He gets 3 more.\nHow many apples now?"
Q2 = "Ana has 9 pens. She gives 4 away.\nHow many pens now?"
C1A = "Tom had 5 and got 3, so 5 + 3 = 8. The answer is (5 + 3)."
C1B = "Tom had 5 and lost 3, so 5 - 3 = 2. The answer is (5 - 3).\n\nQ: next question"
C2A = "Ana gave some away, so she has fewer."  # no answer sentence: unparseable
C2B = "Ana had 9 and gave 4, so 9 - 4 = 5. The answer is (9 - 4)."


def _eval(body: str, verdict: str | None) -> SelfEvaluation:
    tail = f"\n\nEvaluation result: the given answer is {verdict}." if verdict else ""
    return self_evaluation_from_text(f"Evaluation:\n{body}{tail}")


def hand_written_set() -> list[DistillationRecord]:
    """N = 2 CoTs per question, M = 2 self-evaluations per CoT, with unparseable outputs."""
    c1a = cot_from_text(SVAMP, C1A)
    c1a.self_evaluations = [_eval("Adding is right.", "correct"), _eval("Looks fine.", None)]
    c1b = cot_from_text(SVAMP, C1B)
    c1b.self_evaluations = [
        _eval("He got more, not fewer.", "wrong"),
        _eval("Unclear.", "uncertain"),
    ]
    c2a = cot_from_text(SVAMP, C2A)
    c2a.self_evaluations = [_eval("No answer given.", "wrong"), _eval("", "wrong")]
    c2b = cot_from_text(SVAMP, C2B)
    c2b.self_evaluations = [_eval("Subtracting is right.", "correct"), _eval("Fine.", "correct")]
    return [
        DistillationRecord(id="q1", task="svamp", question=Q1, label="5 + 3", cots=[c1a, c1b]),
        DistillationRecord(id="q2", task="svamp", question=Q2, label=None, cots=[c2a, c2b]),
    ]


def _self_eval_pair(
    record_id: str, question: str, cot: str, verdict: str, rationale: str
) -> TrainingPair:
    # Written out literally (not with Prefixes) so the test pins the contract's input format.
    return TrainingPair(
        record_id=record_id,
        stage="self_evaluation",
        predict_input=f"predict: evaluate: {question}\nreasoning: {cot}",
        label=verdict,
        explain_input=f"explain: evaluate: {question}\nreasoning: {cot}",
        rationale=rationale,
    )


def test_self_evaluation_pairs_are_exactly_the_parsed_evaluations() -> None:
    result = build_self_evaluation_pairs(hand_written_set(), SVAMP)
    c1b_trimmed = C1B.split("\n\nQ:")[0]  # the run-on few-shot continuation is cut
    assert result.pairs == [
        _self_eval_pair("q1", Q1, C1A, "correct", "Adding is right."),
        _self_eval_pair("q1", Q1, c1b_trimmed, "wrong", "He got more, not fewer."),
        _self_eval_pair("q1", Q1, c1b_trimmed, "uncertain", "Unclear."),
        # an unparseable CoT can still be judged: the teacher said it is wrong
        _self_eval_pair("q2", Q2, C2A, "wrong", "No answer given."),
        _self_eval_pair("q2", Q2, C2B, "correct", "Subtracting is right."),
        _self_eval_pair("q2", Q2, C2B, "correct", "Fine."),
    ]
    assert result.considered == 8
    assert result.skipped == {
        "self-evaluations without a verdict": 1,
        "self-evaluations without a rationale": 1,
    }


def test_self_evaluation_counts_limit_cots_and_evaluations() -> None:
    result = build_self_evaluation_pairs(
        hand_written_set(), SVAMP, num_cots=1, num_self_evaluations=1
    )
    assert [(p.record_id, p.label, p.rationale) for p in result.pairs] == [
        ("q1", "correct", "Adding is right."),
        ("q2", "wrong", "No answer given."),
    ]
    assert result.considered == 2


def test_cot_pairs_teacher_labels() -> None:
    result = build_cot_pairs(hand_written_set(), SVAMP)
    assert result.pairs == [
        TrainingPair(
            "q1",
            "cot",
            f"predict: {Q1}",
            "5 + 3",
            f"explain: {Q1}",
            "Tom had 5 and got 3, so 5 + 3 = 8.",
        ),
        TrainingPair(
            "q1",
            "cot",
            f"predict: {Q1}",
            "5 - 3",
            f"explain: {Q1}",
            "Tom had 5 and lost 3, so 5 - 3 = 2.",
        ),
        TrainingPair(
            "q2",
            "cot",
            f"predict: {Q2}",
            "9 - 4",
            f"explain: {Q2}",
            "Ana had 9 and gave 4, so 9 - 4 = 5.",
        ),
    ]
    assert result.skipped == {"CoTs without a parseable answer": 1}
    assert build_cot_pairs(hand_written_set(), SVAMP, num_cots=1).pairs == result.pairs[:1]


def test_cot_pairs_human_labels() -> None:
    result = build_cot_pairs(hand_written_set(), SVAMP, label_source="human")
    # The gold label goes with every teacher rationale, even the wrong CoT's.
    assert [(p.record_id, p.label, p.rationale) for p in result.pairs] == [
        ("q1", "5 + 3", "Tom had 5 and got 3, so 5 + 3 = 8."),
        ("q1", "5 + 3", "Tom had 5 and lost 3, so 5 - 3 = 2."),
    ]
    assert result.skipped == {"CoTs of examples without a human label": 2}


def test_custom_prefixes_are_used() -> None:
    prefixes = Prefixes(predict="[P] ", explain="[E] ")
    pair = build_cot_pairs(hand_written_set(), SVAMP, prefixes=prefixes).pairs[0]
    assert pair.predict_input == f"[P] {Q1}"
    assert pair.explain_input == f"[E] {Q1}"


def test_validation_uses_human_label_else_majority() -> None:
    records = hand_written_set()
    pairs = build_cot_validation(records, SVAMP).pairs
    assert [(p.record_id, p.label) for p in pairs] == [("q1", "5 + 3"), ("q2", "9 - 4")]
    # the rationale is that of a CoT agreeing with the gold answer
    assert pairs[0].rationale == "Tom had 5 and got 3, so 5 + 3 = 8."
    assert build_cot_validation(records, SVAMP, label_source="human").skipped == {
        "held-out examples without a label": 1
    }


def test_split_is_by_example_and_deterministic() -> None:
    records = [
        DistillationRecord(id=str(i), task="svamp", question=f"q{i}", cots=[]) for i in range(20)
    ]
    train, val = split_records(records, 0.2, seed=3)
    assert len(val) == 4
    assert len(train) == 16
    assert not {r.id for r in train} & {r.id for r in val}
    assert split_records(records, 0.2, seed=3) == (train, val)
    assert split_records(records, 0.0, seed=3) == (records, [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_records(records, 1.0, seed=0)


def test_cot_judge() -> None:
    pair = TrainingPair("x", "cot", "p", "84 / 2", "e", "r")
    judge = cot_judge(SVAMP)
    assert judge("( 84.0 / 2.0 )", pair) == (True, True)
    assert judge("42 * 1", pair) == (True, True)  # same value
    assert judge("84 - 2", pair) == (True, False)
    assert judge("no idea", pair) == (False, False)


# ----- the cleaning rules in the pairs (training/student/cleaning.py) ----------------------
def _chain(answer: str | None, rationale: str, *verdicts: Verdict) -> TeacherCoT:
    evaluations = [SelfEvaluation(text="", rationale="r", verdict=v) for v in verdicts]
    return TeacherCoT(text="", rationale=rationale, answer=answer, self_evaluations=evaluations)


def _labels(result) -> list[tuple[str, str, str]]:
    return [(p.record_id, p.label, p.rationale) for p in result.pairs]


def test_the_papers_default_is_unchanged() -> None:
    records = hand_written_set()
    default = build_cot_pairs(records, SVAMP)
    explicit = build_cot_pairs(
        records,
        SVAMP,
        label_source="teacher",
        num_self_evaluations=1,
        drop_judged_wrong=False,
        drop_disagreeing=False,
    )
    assert explicit == default  # the rules off: the verdicts are not read at all
    # the pairs of test_cot_pairs_teacher_labels, pinned literally there; the description too
    assert len(default.pairs) == 3
    assert default.questions_without_pairs == 0
    assert (
        default.describe()
        == "3 pairs from 4 teacher outputs (skipped: 1 CoTs without a parseable answer)"
    )


def test_drop_judged_wrong_leaves_out_what_the_verdicts_reject() -> None:
    # c1b's verdicts are wrong + uncertain: dropped. c2a (wrong, wrong) has no parseable answer,
    # counted under that first reason.
    result = build_cot_pairs(hand_written_set(), SVAMP, drop_judged_wrong=True)
    assert _labels(result) == [
        ("q1", "5 + 3", "Tom had 5 and got 3, so 5 + 3 = 8."),
        ("q2", "9 - 4", "Ana had 9 and gave 4, so 9 - 4 = 5."),
    ]
    assert result.skipped == {
        "CoTs without a parseable answer": 1,
        "CoTs judged wrong by the teacher's self-evaluations": 1,
    }
    assert "1 CoTs judged wrong by the teacher's self-evaluations" in result.describe()


def test_a_question_whose_every_cot_is_dropped_gives_no_pair_but_keeps_stage_1() -> None:
    rejected = DistillationRecord(
        id="q3",
        task="svamp",
        question=Q2,
        label="9 - 4",
        cots=[_chain("9 + 4", "Adding.", Verdict.WRONG), _chain("4 - 9", "Back.", Verdict.WRONG)],
    )
    records = [*hand_written_set(), rejected]
    result = build_cot_pairs(records, SVAMP, drop_judged_wrong=True)
    assert "q3" not in {pair.record_id for pair in result.pairs}
    assert result.questions_without_pairs == 1
    assert result.describe().endswith("; 1 questions left without any pair")
    # With majority labels no chain is left to vote: counted as judged wrong, not unlabelled.
    voted = build_cot_pairs([rejected], SVAMP, label_source="majority", drop_judged_wrong=True)
    assert (voted.pairs, voted.questions_without_pairs) == ([], 1)
    assert voted.skipped == {"CoTs judged wrong by the teacher's self-evaluations": 2}
    # Stage 1 is not cleaned: the rejected chains' self-evaluations are still trained on.
    assert [p.record_id for p in build_self_evaluation_pairs([rejected], SVAMP).pairs] == [
        "q3",
        "q3",
    ]


def test_majority_labels_go_with_every_rationale_of_the_question() -> None:
    result = build_cot_pairs(hand_written_set(), SVAMP, label_source="majority")
    # q1: 5 + 3 against 5 - 3, a tie: the first answer. q2: only c2b voted; c2a's rationale
    # needs no answer of its own, as with human labels.
    assert _labels(result) == [
        ("q1", "5 + 3", "Tom had 5 and got 3, so 5 + 3 = 8."),
        ("q1", "5 + 3", "Tom had 5 and lost 3, so 5 - 3 = 2."),
        ("q2", "9 - 4", "Ana gave some away, so she has fewer."),
        ("q2", "9 - 4", "Ana had 9 and gave 4, so 9 - 4 = 5."),
    ]
    assert result.skipped == {}
    unparsed = DistillationRecord(
        id="q4", task="svamp", question=Q1, cots=[_chain(None, "Hm."), _chain(None, "Hm!")]
    )
    nothing = build_cot_pairs([unparsed], SVAMP, label_source="majority")
    assert nothing.skipped == {"CoTs of questions without a majority answer": 2}


def test_weighted_majority_labels_follow_the_verdicts() -> None:
    split = DistillationRecord(
        id="q5",
        task="svamp",
        question=Q2,
        cots=[
            _chain("9 + 4", "Adding.", Verdict.WRONG),
            _chain("9 - 4", "Taking.", Verdict.CORRECT),
        ],
    )
    assert {p.label for p in build_cot_pairs([split], SVAMP, label_source="majority").pairs} == {
        "9 + 4"  # a tie: the first
    }
    weighted = build_cot_pairs([split], SVAMP, label_source="weighted-majority")
    assert _labels(weighted) == [("q5", "9 - 4", "Adding."), ("q5", "9 - 4", "Taking.")]


def test_agreement_filter_with_human_labels() -> None:
    result = build_cot_pairs(hand_written_set(), SVAMP, label_source="human", drop_disagreeing=True)
    assert _labels(result) == [("q1", "5 + 3", "Tom had 5 and got 3, so 5 + 3 = 8.")]
    assert result.skipped == {
        "CoTs of examples without a human label": 2,
        "CoTs whose answer disagrees with the label": 1,
    }
    assert result.questions_without_pairs == 1  # q2 has no human label


def test_agreement_filter_with_majority_labels() -> None:
    votes = DistillationRecord(
        id="q6",
        task="svamp",
        question=Q2,
        cots=[
            _chain("9 + 4", "Adding."),
            _chain("( 9 - 4 )", "Taking."),
            _chain(None, "Unsure."),
            _chain("9 - 4", "Taking away."),
        ],
    )
    result = build_cot_pairs([votes], SVAMP, label_source="majority", drop_disagreeing=True)
    # the label is the first spelling of the majority answer
    assert _labels(result) == [("q6", "( 9 - 4 )", "Taking."), ("q6", "( 9 - 4 )", "Taking away.")]
    assert result.skipped == {
        "CoTs whose answer disagrees with the label": 1,
        "CoTs without a parseable answer": 1,  # cannot agree with anything
    }
    with pytest.raises(ValueError, match="its own answer"):
        build_cot_pairs([votes], SVAMP, drop_disagreeing=True)


def test_validation_labels_follow_the_label_source() -> None:
    split = DistillationRecord(
        id="v",
        task="svamp",
        question=Q2,
        cots=[
            _chain("9 + 4", "Adding.", Verdict.WRONG),
            _chain("9 - 4", "Taking.", Verdict.CORRECT),
        ],
    )
    labelled = split.model_copy(update={"id": "g", "label": "9 - 4"})

    def gold(**options) -> list[tuple[str, str]]:
        return [
            (p.record_id, p.label)
            for p in build_cot_validation([split, labelled], SVAMP, **options).pairs
        ]

    # the human label wins wherever there is one; elsewhere the vote training would take
    assert gold() == [("v", "9 + 4"), ("g", "9 - 4")]
    assert gold(label_source="majority") == [("v", "9 + 4"), ("g", "9 - 4")]
    assert gold(label_source="weighted-majority") == [("v", "9 - 4"), ("g", "9 - 4")]
    assert gold(label_source="majority", drop_judged_wrong=True) == [("v", "9 - 4"), ("g", "9 - 4")]
    assert gold(label_source="human") == [("g", "9 - 4")]
