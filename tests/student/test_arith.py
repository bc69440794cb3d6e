import json
import re
from collections import Counter
from fractions import Fraction

import pytest
from mindmirror.student.arithmetic import BinOp, Num, evaluate
from mindmirror.student.distillation import load_task_examples
from mindmirror.student.formats import parse_self_evaluation
from mindmirror.student.tasks import Example, TaskDataError, available_tasks, get_task
from mindmirror.student.tasks._arith_templates import CONTAINERS, ITEMS, NAMES, PLACES
from mindmirror.student.tasks.arith import (
    ArithTask,
    equation_leaves,
    equation_ops,
    equation_value,
    generate_problems,
    generate_splits,
    parse_equation,
    render_equation,
    template_names,
    write_arith_data,
)
from mindmirror.student.tasks.svamp import SvampTask, canonical_equation

task = get_task("arith")


@pytest.fixture(scope="module")
def splits():
    return generate_splits(seed=3, train=1500, validation=150, test=400)


def test_registered_and_judged_like_svamp() -> None:
    assert "arith" in available_tasks()
    assert isinstance(task, ArithTask)
    assert isinstance(task, SvampTask)
    assert task.is_correct("5 + 12", "( 12 + 5 )")
    assert not task.is_correct("12 - 5", "12 + 5")
    assert task.split_cot("12 + 5 = 17. The answer is ((12 + 5) - 3).") == (
        "12 + 5 = 17.",
        "( 12 + 5 ) - 3",
    )


def test_exemplars_parse_with_the_task() -> None:
    assert len(task.cot_exemplars) >= 2
    for exemplar in task.cot_exemplars:
        rationale, label = task.split_cot(exemplar.answer)
        assert label is not None, exemplar.answer
        assert rationale
    for exemplar in task.self_eval_exemplars:
        assert parse_self_evaluation(exemplar.evaluation)[1] is not None


def test_splits_have_the_sizes_asked_for_and_share_no_question(splits) -> None:
    assert {name: len(problems) for name, problems in splits.items()} == {
        "train": 1500,
        "validation": 150,
        "test": 400,
    }
    questions = {name: {p.question for p in problems} for name, problems in splits.items()}
    assert all(len(questions[name]) == len(splits[name]) for name in splits)  # no repeats
    assert not questions["train"] & questions["test"]
    assert not questions["train"] & questions["validation"]
    assert not questions["validation"] & questions["test"]
    ids = [p.id for problems in splits.values() for p in problems]
    assert len(set(ids)) == len(ids)


def test_splits_are_seeded_and_stable_when_train_grows(splits) -> None:
    again = generate_splits(seed=3, train=1500, validation=150, test=400)
    assert [p.record() for p in again["train"]] == [p.record() for p in splits["train"]]
    other = generate_splits(seed=4, train=1500, validation=150, test=400)
    assert [p.question for p in other["test"]] != [p.question for p in splits["test"]]
    bigger = generate_splits(seed=3, train=3000, validation=150, test=400)
    assert [p.record() for p in bigger["test"]] == [p.record() for p in splits["test"]]
    assert [p.record() for p in bigger["validation"]] == [p.record() for p in splits["validation"]]
    # A split's stream does not depend on how many problems are asked for.
    assert [p.record() for p in generate_problems(50, seed=3, split="test")] == [
        p.record() for p in splits["test"][:50]
    ]


def test_labels_are_exact_whole_and_built_from_the_question(splits) -> None:
    for problem in splits["train"]:
        label = problem.label
        assert label == task.normalize_label(label)
        value = evaluate(label)
        assert value.denominator == 1
        assert 0 < value <= 200, (problem.question, label)
        question_numbers = Counter(int(n) for n in re.findall(r"\d+", problem.question))
        for number in equation_leaves(problem.equation):
            assert question_numbers[int(number)] >= 1, (problem.question, label)
        assert all(n <= 120 for n in question_numbers), problem.question  # modest sizes
        # SVAMP's shape: a body, then the question on its own line.
        body, question = problem.question.split("\n")
        assert body.endswith(".")
        assert question.startswith("How ")
        assert question.endswith("?")


def test_every_operation_in_several_templates_and_one_and_two_steps(splits) -> None:
    problems = splits["train"]
    by_op: dict[str, set[str]] = {}
    phrasings: dict[str, set[str]] = {}
    for problem in problems:
        ops = equation_ops(problem.equation)
        if len(ops) == 1:
            by_op.setdefault(ops[0], set()).add(problem.template)
            phrasings.setdefault(ops[0], set()).add(_shape(problem.question))
    assert set(by_op) == {"+", "-", "*", "/"}
    assert all(len(templates) >= 2 for templates in by_op.values()), by_op
    assert all(len(shapes) >= 5 for shapes in phrasings.values()), phrasings
    counts = Counter(len(equation_ops(p.equation)) for p in problems)
    assert 0.3 < counts[2] / len(problems) < 0.5  # two_step_fraction = 0.4
    assert counts[1] + counts[2] == len(problems)
    assert set(template_names()) == {p.template for p in problems}
    # SVAMP-style distractors: some questions hold a number the equation does not use.
    with_distractor = [
        p
        for p in problems
        if len(re.findall(r"\d+", p.question)) > len(equation_leaves(p.equation))
    ]
    assert len(with_distractor) > 0.03 * len(problems)


def _shape(question: str) -> str:
    """A question with its numbers, names and nouns blanked out: its phrasing."""
    words = {name for name, _ in NAMES} | set(ITEMS) | set(PLACES)
    words |= {form for pair in CONTAINERS for form in pair} | {"He", "She", "him", "her"}
    shape = re.sub(r"\d+", "N", question)
    return " ".join("W" if w.strip(".?,") in words else w for w in shape.split())


def test_write_arith_data_round_trips_through_the_task_loader(tmp_path) -> None:
    paths = write_arith_data(tmp_path / "data", seed=1, train=40, validation=10, test=20)
    assert {name: path.name for name, path in paths.items()} == {
        "train": "train.jsonl",
        "validation": "validation.jsonl",
        "test": "test.jsonl",
    }
    lines = paths["test"].read_text().splitlines()
    assert len(lines) == 20
    record = json.loads(lines[0])
    assert set(record) == {"id", "input", "label"}
    examples = load_task_examples(task, paths["train"])
    expected = generate_splits(seed=1, train=40, validation=10, test=20)["train"]
    assert [(e.id, e.question, e.label) for e in examples] == [
        (p.id, p.question, p.label) for p in expected
    ]
    assert not list((tmp_path / "data").glob(".*.tmp"))  # atomic writes leave nothing behind


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(TaskDataError, match="negative"):
        generate_problems(-1)
    with pytest.raises(TaskDataError, match="two_step_fraction"):
        generate_splits(two_step_fraction=1.5)


@pytest.mark.parametrize(
    ("text", "canonical", "teacher"),
    [
        ("( ( 17.0 + 15.0 ) + 2.0 )", "( 17 + 15 ) + 2", "(17 + 15) + 2"),
        ("(23 - (5 * 3))", "23 - ( 5 * 3 )", "23 - (5 * 3)"),
        ("84 / 2", "84 / 2", "84 / 2"),
        ("18", "18", "18"),
    ],
)
def test_equation_trees_round_trip(text: str, canonical: str, teacher: str) -> None:
    tree = parse_equation(text)
    assert render_equation(tree) == canonical
    assert render_equation(tree, teacher=True) == teacher
    assert evaluate(render_equation(tree)) == evaluate(text)


def test_parse_equation_precedence_and_errors() -> None:
    assert parse_equation("2 + 3 * 4") == BinOp(
        "+", Num(Fraction(2)), BinOp("*", Num(Fraction(3)), Num(Fraction(4)))
    )
    assert parse_equation("10 - 4 - 3") == BinOp(
        "-", BinOp("-", Num(Fraction(10)), Num(Fraction(4))), Num(Fraction(3))
    )
    with pytest.raises(TaskDataError, match="not an arithmetic equation"):
        parse_equation("x + 2")


def test_generated_records_parse_as_examples(splits) -> None:
    problem = splits["test"][0]
    example = task.example_from_record(problem.record(), 0)
    assert example == Example(id=problem.id, question=problem.question, label=problem.label)


def test_trees_write_the_labels_the_svamp_task_reads(splits) -> None:
    for problem in splits["test"]:
        label = render_equation(problem.equation)
        assert label == canonical_equation(render_equation(problem.equation, teacher=True))
        assert parse_equation(label) == problem.equation
        assert equation_value(problem.equation) == evaluate(label)
    negative = BinOp("-", Num(Fraction(-5)), Num(Fraction(1, 2)))
    assert render_equation(negative) == "- 5 - 0.5" == canonical_equation("-5 - 0.5")
    assert render_equation(negative, teacher=True) == "-5 - 0.5"


def test_equation_value_counts_the_numbers_as_written() -> None:
    # 10/3 is written 3.33333: the equation's value is the value of its text, which is what the
    # simulated teacher's rationales compute with ("10 / 3 = 3.33333. Then 3.33333 * 3 = ...").
    tree = BinOp("*", Num(Fraction(10, 3)), Num(Fraction(3)))
    assert render_equation(tree, teacher=True) == "3.33333 * 3"
    assert equation_value(tree) == Fraction("9.99999") == evaluate(render_equation(tree))
