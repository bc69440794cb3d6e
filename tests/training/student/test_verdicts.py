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
    VerdictAgreement,
    measure_verdicts,
    teacher_verdicts,
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
