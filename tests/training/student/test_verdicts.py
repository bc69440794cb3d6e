"""The held-out verdict metric: one rule for model selection, distill's record and evaluate."""

import pytest
from mindmirror.student.distillation import (
    DistillationRecord,
    TeacherCoT,
    self_evaluation_from_text,
)
from mindmirror.student.formats import DEFAULT_PREFIXES, verdict_sentence
from mindmirror.student.tasks import get_task
from mindmirror.training.student import generation
from mindmirror.training.student.examples import TrainingPair
from mindmirror.training.student.verdicts import (
    GOLD_LABELS,
    TEACHER_VERDICTS,
    TruthReport,
    VerdictAgreement,
    measure_verdicts,
    score_cases,
    teacher_verdicts,
    truth_cases,
    verdict_judge,
)

SVAMP = get_task("svamp")


def test_verdict_judge_reads_with_read_verdict() -> None:
    pair = TrainingPair("x", "self_evaluation", "p", "wrong", "e", "r")
    assert verdict_judge("Wrong.", pair) == (True, True)
    assert verdict_judge("incorrect", pair) == (True, True)
    assert verdict_judge("correct", pair) == (True, False)
    assert verdict_judge("( 3 + 4 )", pair) == (False, False)


def test_measure_generates_each_input_once_and_compares(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {"a": "correct", "b": "Wrong.", "c": "12 + 7"}
    asked: list[list[str]] = []

    def fake_generate(model, tokenizer, inputs, **settings):
        asked.append(list(inputs))
        assert settings["max_new_tokens"] == 8
        return [outputs[source] for source in inputs]

    monkeypatch.setattr(generation, "generate_texts", fake_generate)
    cases = [("a", "correct"), ("a", "wrong"), ("b", "wrong"), ("c", "uncertain")]
    agreement = measure_verdicts(
        None, None, cases, max_new_tokens=8, max_input_length=64, batch_size=4, progress=False
    )
    assert asked == [["a", "b", "c"]]  # the M evaluations of one chain share an input
    assert agreement == VerdictAgreement(
        student=["correct", "correct", "wrong", None],
        teacher=["correct", "wrong", "wrong", "uncertain"],
    )
    assert (agreement.agreeing, agreement.readable, agreement.total) == (2, 3, 4)
    assert agreement.accuracy == 0.5
    # The same rule as the per-text judge that selects stage 1's checkpoint.
    pairs = [TrainingPair("x", "self_evaluation", s, v, "e", "r") for s, v in cases]
    assert agreement.agreeing == sum(verdict_judge(outputs[p.predict_input], p)[1] for p in pairs)
    assert VerdictAgreement(student=[], teacher=[]).accuracy == 0.0


def test_teacher_verdicts_are_every_parsed_self_evaluation() -> None:
    cot = TeacherCoT(text="2 and 3 make 5. The answer is (2 + 3).", rationale="2 and 3.")
    cot.self_evaluations = [
        self_evaluation_from_text(f"Fine.\n{verdict_sentence('correct')}"),
        self_evaluation_from_text("no verdict here"),
        self_evaluation_from_text(f"Not sure.\n{verdict_sentence('uncertain')}"),
    ]
    record = DistillationRecord(id="a", task="svamp", question="2 + 3?", cots=[cot])
    source = DEFAULT_PREFIXES.self_eval_input("2 + 3?", cot.text, "predict")
    assert teacher_verdicts([record], SVAMP, DEFAULT_PREFIXES) == [
        (source, "correct"),
        (source, "uncertain"),
    ]


def _cot(text: str, *verdicts: str) -> TeacherCoT:
    rationale, answer = SVAMP.split_cot(text)
    evaluations = [self_evaluation_from_text(f"Hm.\n{verdict_sentence(v)}") for v in verdicts]
    return TeacherCoT(text=text, rationale=rationale, answer=answer, self_evaluations=evaluations)


def test_truth_comes_from_gold_labels_when_there_are_any() -> None:
    right = _cot("2 and 3 make 5. The answer is (3 + 2).", "wrong")  # the teacher misjudged it
    wrong = _cot("2 and 3 make 6. The answer is (2 * 3).", "correct")
    unparsed = _cot("2 and 3 make 5.", "correct")
    labelled = DistillationRecord(
        id="a", task="svamp", question="2 + 3?", label="2 + 3", cots=[right, wrong, unparsed]
    )
    unlabelled = DistillationRecord(id="b", task="svamp", question="4 + 4?", cots=[right])
    cases, source = truth_cases([labelled, unlabelled], SVAMP, DEFAULT_PREFIXES)
    assert source == GOLD_LABELS
    assert [truth for _, truth in cases] == [True, False, False]  # by value; no answer is wrong
    assert cases[0][0] == DEFAULT_PREFIXES.self_eval_input("2 + 3?", right.text, "predict")
    # Only the first N chains of thought count, as in training.
    assert len(truth_cases([labelled], SVAMP, DEFAULT_PREFIXES, num_cots=1)[0]) == 1


def test_without_labels_the_teacher_majority_stands_in() -> None:
    cots = [
        _cot("a. The answer is (1 + 1).", "correct", "correct", "wrong"),
        _cot("b. The answer is (1 * 1).", "wrong", "uncertain"),
        _cot("c. The answer is (1 - 1).", "correct", "wrong"),  # a tie: no case
        _cot("d. The answer is (2 - 1).", "uncertain"),  # no correct/wrong vote: no case
    ]
    record = DistillationRecord(id="a", task="svamp", question="q?", cots=cots)
    cases, source = truth_cases([record], SVAMP, DEFAULT_PREFIXES)
    assert source == TEACHER_VERDICTS
    assert [truth for _, truth in cases] == [True, False]


def test_score_cases_scores_each_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    asked: list[list[str]] = []
    table = {"x": [math.log(0.8), math.log(0.1), math.log(0.1)], "y": [-3.0, -0.1, -5.0]}

    def fake_scores(model, tokenizer, inputs, tokens, **settings):
        asked.append(list(inputs))
        assert len(tokens) == 3
        return [table[text] for text in inputs]

    monkeypatch.setattr(generation, "first_token_logprobs", fake_scores)
    report = score_cases(
        None,
        _TokenizerShim(),
        [("x", True), ("y", False), ("x", True)],
        GOLD_LABELS,
        None,
        max_input_length=64,
        batch_size=4,
        progress=False,
    )
    assert asked == [["x", "y"]]
    assert isinstance(report, TruthReport)
    assert report.truths == [True, False, True]
    assert report.scores[0] == pytest.approx(0.8 / 0.9)
    assert (report.auroc, report.balanced_accuracy, report.right) == (1.0, 1.0, 2)
    assert report.to_dict()["truth_from"] == GOLD_LABELS
    calibration = report.calibrate()
    assert calibration.fitted_on == GOLD_LABELS
    assert calibration.examples == (2, 1)


class _TokenizerShim:
    """What ``verdict_token_ids`` needs of a tokenizer: ids of a whole text."""

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [{"correct": 4, "wrong": 5, "uncertain": 6}[text], 1]}
