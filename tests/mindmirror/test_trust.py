"""``mindmirror.trust`` on the tiny trained student, through the service's own runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings
from mindmirror.student.distillation import DistillationRecord, TeacherCoT
from mindmirror.student.tasks import Example, get_task

from mindmirror.trust import Reasoning, measure_trust, reasonings_from_records
from tests.tiny_student import make_problems


@pytest.mark.slow
def test_the_tiny_student_is_measured_end_to_end(tiny_bundle: Path) -> None:
    problems = make_problems(6, seed=5)
    examples = [
        Example(id=str(i), question=p.question, label=p.label) for i, p in enumerate(problems)
    ]
    reasonings = [
        Reasoning(e, f"{p.rationale} The answer is ({p.label}).", True)
        for e, p in zip(examples, problems, strict=True)
    ] + [
        Reasoning(e, f"{p.wrong_rationale} The answer is ({p.wrong_label}).", False)
        for e, p in zip(examples, problems, strict=True)
    ]
    model = StudentModel.open(Settings(bundle=tiny_bundle, backend="pytorch", num_threads=1))
    report = measure_trust(model, examples, reasonings, num_samples=2, batch_size=8)
    assert (report.questions, report.reasonings, report.right_reasonings) == (6, 12, 6)
    # The tiny student learnt to tell its right chains from its wrong ones.
    assert report.verdict_auroc is not None
    assert report.verdict_auroc > 0.8
    assert report.verdict_balanced_accuracy is not None
    assert 0 <= report.generated_correct_share <= 1
    # svamp checks every explanation; the calculator (on by default, and PyTorch can force
    # tokens) makes more of the stated steps right than the student alone writes.
    assert report.explain_checked == 6
    assert report.steps >= 1
    alone = measure_trust(
        StudentModel.open(
            Settings(bundle=tiny_bundle, backend="pytorch", num_threads=1, calculator=False)
        ),
        examples,
        [],
        num_samples=1,
    )
    assert alone.step_accuracy is not None
    assert report.step_accuracy is not None
    assert report.step_accuracy > alone.step_accuracy
    assert 0 <= report.greedy_accuracy <= 1
    assert report.self_consistency_accuracy is not None
    assert report.to_dict()["num_samples"] == 2


def test_reasonings_from_records_are_judged_by_the_label() -> None:
    task = get_task("svamp")
    cots = [
        TeacherCoT(
            text="2 + 3 = 5. The answer is (2 + 3).", rationale="2 + 3 = 5.", answer="2 + 3"
        ),
        TeacherCoT(
            text="2 * 3 = 6. The answer is (2 * 3).", rationale="2 * 3 = 6.", answer="2 * 3"
        ),
        TeacherCoT(text="", rationale="", answer=None),  # nothing to judge
    ]
    labelled = DistillationRecord(id="a", task="svamp", question="2 + 3?", label="3 + 2", cots=cots)
    unlabelled = DistillationRecord(id="b", task="svamp", question="q?", cots=cots[:1])
    reasonings = reasonings_from_records(task, [labelled, unlabelled])
    assert [(r.text, r.right) for r in reasonings] == [(cots[0].text, True), (cots[1].text, False)]


def test_unlabelled_examples_are_refused(tiny_bundle: Path) -> None:
    model = StudentModel.open(Settings(bundle=tiny_bundle, backend="pytorch"))
    with pytest.raises(ValueError, match="needs a label"):
        measure_trust(model, [Example(id="x", question="q")], [])
