import math
import os
import subprocess
import sys
from collections import Counter

import pytest
from mindmirror.student.distillation import (
    DistillationRecord,
    cot_from_text,
    parse_stats,
    self_evaluation_from_text,
)
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import Verdict, parse_self_evaluation, verdict_sentence
from mindmirror.student.tasks import Example, get_task
from mindmirror.student.tasks.arith import (
    equation_leaves,
    equation_ops,
    generate_problems,
    parse_equation,
)
from mindmirror.training.teacher.simulated import (
    ERROR_KINDS,
    SimulatedTeacher,
    SimulatedTeacherConfig,
    SimulatedTeacherError,
    realized_rates,
    simulate_cot,
    simulate_self_evaluation,
    simulated_distillation_set,
)

task = get_task("arith")

# 4 binomial standard errors: a correct simulator fails this about once in 16,000 runs, and
# with these sample sizes a rate that is off by 0.05 or more is caught.
SIGMAS = 4.0


def within_sampling_error(observed: float, expected: float, n: int) -> bool:
    return abs(observed - expected) <= SIGMAS * math.sqrt(expected * (1 - expected) / n) + 1e-12


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    problems = generate_problems(800, seed=11, split="train")
    return [task.example_from_record(p.record(), i) for i, p in enumerate(problems)]


@pytest.fixture(scope="module")
def samples(examples):
    """4 CoTs per example (3,200) at error rate 0.3, one self-evaluation of each."""
    config = SimulatedTeacherConfig(
        error_rate=0.3, verdict_agreement=0.7, uncertain_rate=0.12, seed=5
    )
    teacher = SimulatedTeacher(config)
    out = []
    for example in examples:
        for cot in teacher.cots(example, 4):
            out.append((example, cot, teacher.self_evaluations(example, cot.text, 1)[0]))
    return config, out


def test_realized_rates_match_the_settings(samples) -> None:
    config, rows = samples
    cots = [cot for _, cot, _ in rows]
    evaluations = [evaluation for _, _, evaluation in rows]
    rates = realized_rates(cots, evaluations)
    n = len(rows)
    assert within_sampling_error(rates["error_rate"], config.error_rate, n), rates
    assert within_sampling_error(rates["verdict_agreement"], config.verdict_agreement, n), rates
    assert within_sampling_error(rates["uncertain_rate"], config.uncertain_rate, n), rates
    # The verdict does not depend on whether the chain is right: agreement holds for the wrong
    # chains alone too (the ones a self-evaluating student most needs to learn from).
    wrong = [e for e in evaluations if e.truth is Verdict.WRONG]
    agreement_on_wrong = sum(e.verdict is Verdict.WRONG for e in wrong) / len(wrong)
    assert within_sampling_error(agreement_on_wrong, config.verdict_agreement, len(wrong))
    opposite = sum(
        e.verdict is not Verdict.UNCERTAIN and e.verdict != e.truth for e in evaluations
    ) / len(evaluations)
    expected_opposite = 1 - config.verdict_agreement - config.uncertain_rate
    assert within_sampling_error(opposite, expected_opposite, n)


def test_every_error_kind_occurs_with_the_defaults(samples) -> None:
    _, rows = samples
    kinds = Counter(cot.error for _, cot, _ in rows if not cot.correct)
    assert set(kinds) == set(ERROR_KINDS), kinds
    assert all(cot.error is None for _, cot, _ in rows if cot.correct)


def test_cots_parse_and_are_right_or_wrong_by_value(samples) -> None:
    _, rows = samples
    for example, cot, _ in rows:
        rationale, answer = task.split_cot(cot.text, example)
        assert cot.text.endswith(")."), cot.text
        assert rationale, cot.text
        assert answer == cot.answer, cot.text
        assert task.is_correct(answer, example.label) is cot.correct, (example.label, cot.text)


def test_wrong_cots_are_wrong_in_the_way_they_claim(samples) -> None:
    _, rows = samples
    for example, cot, _ in rows:
        if cot.correct:
            continue
        gold, answer = parse_equation(example.label), parse_equation(cot.answer)
        if cot.error == "wrong_operation":
            assert sorted(equation_leaves(answer)) == sorted(equation_leaves(gold))
            assert equation_ops(answer) != equation_ops(gold)
        elif cot.error == "dropped_number":
            assert len(equation_leaves(answer)) < len(equation_leaves(gold))
        elif cot.error == "swapped_number":
            assert equation_ops(answer) == equation_ops(gold)
            assert len(equation_leaves(answer)) == len(equation_leaves(gold))
        else:  # arithmetic_slip: one step in the rationale is miscomputed
            assert cot.error == "arithmetic_slip"
            assert (
                "It says"
                in simulate_self_evaluation(
                    example,
                    cot.text,
                    0,
                    SimulatedTeacherConfig(verdict_agreement=1.0, uncertain_rate=0.0),
                ).text
            )


def test_self_evaluations_parse_and_say_why(samples) -> None:
    _, rows = samples
    for example, cot, evaluation in rows:
        rationale, verdict = parse_self_evaluation(evaluation.text)
        assert verdict is evaluation.verdict
        assert (evaluation.truth is Verdict.CORRECT) is cot.correct
        assert evaluation.text.startswith("Evaluation:\n")
        assert evaluation.text.endswith(verdict_sentence(evaluation.verdict))
        assert len(rationale.split()) >= 8, evaluation.text
        if evaluation.verdict is Verdict.WRONG and evaluation.truth is Verdict.WRONG:
            # A caught error names the right equation and its value.
            gold_value = task.answer_value(example.label)
            assert "The right equation is" in rationale
            assert f"= {gold_value:g}." in rationale, (example.label, rationale)


def test_distillation_records_from_the_simulator(samples) -> None:
    config, rows = samples
    records: dict[str, DistillationRecord] = {}
    for example, cot, evaluation in rows:
        record = records.setdefault(
            example.id,
            DistillationRecord(
                id=example.id,
                task="arith",
                question=example.question,
                label=example.label,
                teacher=config.model_name,
            ),
        )
        parsed = cot_from_text(task, cot.text, example)
        parsed.self_evaluations.append(self_evaluation_from_text(evaluation.text))
        record.cots.append(parsed)
    stats = parse_stats(task, list(records.values()))
    assert stats.cot_parse_rate == 1.0
    assert stats.self_evaluation_parse_rate == 1.0
    assert within_sampling_error(1 - stats.teacher_accuracy, config.error_rate, stats.cots)


@pytest.mark.parametrize("error_rate", [0.0, 1.0])
def test_extreme_error_rates(examples, error_rate: float) -> None:
    config = SimulatedTeacherConfig(error_rate=error_rate, verdict_agreement=1.0, uncertain_rate=0)
    for example in examples[:200]:
        cot = simulate_cot(example, 0, config)
        assert cot.correct is (error_rate == 0.0)
        evaluation = simulate_self_evaluation(example, cot.text, 0, config)
        assert evaluation.verdict is (Verdict.CORRECT if cot.correct else Verdict.WRONG)


def test_error_kinds_can_be_restricted(examples) -> None:
    config = SimulatedTeacherConfig(error_rate=1.0, error_kinds=("wrong_operation",))
    kinds = {simulate_cot(example, 0, config).error for example in examples[:200]}
    assert kinds == {"wrong_operation"}
    # "dropped_number" cannot apply to a one-step problem: another kind stands in, and the
    # chain is still wrong.
    config = SimulatedTeacherConfig(error_rate=1.0, error_kinds=("dropped_number",))
    one_step = [e for e in examples if len(equation_ops(parse_equation(e.label))) == 1]
    cot = simulate_cot(one_step[0], 0, config)
    assert not cot.correct
    assert cot.error == "arithmetic_slip"


def test_outputs_are_deterministic_per_example_sample_and_seed(examples) -> None:
    config = SimulatedTeacherConfig(error_rate=0.5, seed=2)
    example = examples[0]
    first = [simulate_cot(example, k, config) for k in range(6)]
    assert [simulate_cot(example, k, config) for k in range(6)] == first
    # Sample k is the same whichever batch asks for it (the store caches per sample index).
    assert SimulatedTeacher(config).cots(example, 3, start=3) == first[3:]
    evaluation = simulate_self_evaluation(example, first[0].text, 4, config)
    assert simulate_self_evaluation(example, first[0].text, 4, config) == evaluation
    # Another seed gives other samples.
    other = SimulatedTeacherConfig(error_rate=0.5, seed=3)
    texts = [simulate_cot(e, 0, config).text for e in examples[:50]]
    assert texts != [simulate_cot(e, 0, other).text for e in examples[:50]]


def test_outputs_do_not_depend_on_the_process(examples) -> None:
    # Python salts str hashes per process; a rerun after a crash must still reproduce texts.
    code = (
        "from mindmirror.student.tasks import Example;"
        "from mindmirror.training.teacher.simulated import simulate_cot, simulate_self_evaluation;"
        f"e = Example(id={examples[7].id!r}, question={examples[7].question!r}, "
        f"label={examples[7].label!r});"
        "c = simulate_cot(e, 3);"
        "print(repr(c.text)); print(repr(simulate_self_evaluation(e, c.text, 1).text))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    cot = simulate_cot(examples[7], 3)
    expected = f"{cot.text!r}\n{simulate_self_evaluation(examples[7], cot.text, 1).text!r}\n"
    assert result.stdout == expected


def test_self_evaluation_of_reasoning_from_elsewhere() -> None:
    example = Example(
        id="x", question="Tom had 12 apples. He found 5 more.\nHow many?", label="12 + 5"
    )
    config = SimulatedTeacherConfig(verdict_agreement=1.0, uncertain_rate=0.0)
    unanswered = simulate_self_evaluation(example, "Tom has apples.", 0, config)
    assert unanswered.truth is Verdict.WRONG
    assert "never states a final equation" in unanswered.text
    right = simulate_self_evaluation(example, "So 5 + 12 = 17. The answer is (5 + 12).", 0, config)
    assert right.truth is Verdict.CORRECT
    assert right.verdict is Verdict.CORRECT


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"verdict_agreement": 0.9, "uncertain_rate": 0.2}, "at most 1"),
        ({"error_kinds": ("typo",)}, "typo"),
        ({"error_kinds": ()}, "non-empty"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(SimulatedTeacherError, match=message):
        SimulatedTeacherConfig(**settings)
    assert issubclass(SimulatedTeacherError, MindmirrorError)


def test_an_example_without_a_gold_equation_is_refused() -> None:
    with pytest.raises(SimulatedTeacherError, match="no label"):
        simulate_cot(Example(id="q", question="How many?"), 0)
    with pytest.raises(SimulatedTeacherError, match="not an arithmetic equation"):
        simulate_cot(Example(id="q", question="How many?"), 0, gold="some apples")


def test_unparseable_outputs_at_the_set_rate_leave_the_others_unchanged(examples) -> None:
    plain = SimulatedTeacherConfig(error_rate=0.3, seed=4)
    sloppy = SimulatedTeacherConfig(error_rate=0.3, seed=4, unparseable_rate=0.2)
    cots, evaluations = [], []
    for example in examples[:500]:
        for k in range(2):
            cot, reference = simulate_cot(example, k, sloppy), simulate_cot(example, k, plain)
            cots.append(cot)
            if cot.answer is None:
                # No final equation: the task's parser finds none, the chain counts as wrong.
                assert task.split_cot(cot.text, example)[1] is None, cot.text
                assert (cot.correct, cot.error) == (False, "unparseable")
                continue
            assert cot == reference  # its own random stream: the rest is the same text
            evaluation = simulate_self_evaluation(example, cot.text, 0, sloppy)
            evaluations.append(evaluation)
            if evaluation.verdict is None:
                assert parse_self_evaluation(evaluation.text)[1] is None
                assert evaluation.text.startswith("Evaluation:\n")
            else:
                assert evaluation == simulate_self_evaluation(example, cot.text, 0, plain)
    rates = realized_rates(cots, evaluations)
    assert within_sampling_error(rates["unparseable_rate"], 0.2, len(cots) + len(evaluations))
    assert within_sampling_error(rates["error_rate"], 0.3, sum(c.answer is not None for c in cots))
    assert "unparseable_rate=0.2" in sloppy.model_name
    assert "unparseable" not in plain.model_name


def test_outputs_depend_only_on_what_the_store_key_holds(examples) -> None:
    # The teacher store keys a sample by (teacher id with the settings, the prompt with the
    # question, the sample index): the example id is not in it, so it must not change the text.
    example = examples[3]
    renamed = Example(id="another-id", question=example.question, label=example.label)
    cot = simulate_cot(example, 2)
    assert simulate_cot(renamed, 2) == cot
    assert simulate_self_evaluation(renamed, cot.text, 1) == simulate_self_evaluation(
        example, cot.text, 1
    )


def test_distillation_set_uses_the_runner_sample_indices(examples) -> None:
    config = SimulatedTeacherConfig(error_rate=0.4, unparseable_rate=0.15, seed=9)
    chosen = examples[:30]
    records = simulated_distillation_set(chosen, 3, 2, config)
    assert [r.id for r in records] == [e.id for e in chosen]
    for record, example in zip(records, chosen, strict=True):
        assert (record.task, record.label, record.teacher) == (
            "arith",
            example.label,
            config.model_name,
        )
        assert len(record.cots) == 3
        for k, cot in enumerate(record.cots):
            assert cot.text == simulate_cot(example, k, config).text
            if cot.answer is None:
                assert cot.self_evaluations == []  # as a teacher run: unparseable CoTs get none
                continue
            # Self-evaluation j of CoT k is sample k * M + j, as the runner numbers its slots.
            assert [e.text for e in cot.self_evaluations] == [
                simulate_self_evaluation(example, cot.text, k * 2 + j, config).text
                for j in range(2)
            ]
    assert any(cot.answer is None for record in records for cot in record.cots)
    with_unparsed = simulated_distillation_set(chosen, 3, 2, config, evaluate_unparsed=True)
    assert all(len(c.self_evaluations) == 2 for r in with_unparsed for c in r.cots)
    with pytest.raises(SimulatedTeacherError, match="at least one chain of thought"):
        simulated_distillation_set(chosen, 0, 2, config)
