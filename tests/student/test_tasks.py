import json
from typing import ClassVar

import pytest
from mindmirror.student.arithmetic import evaluate
from mindmirror.student.tasks import TaskDataError, UnknownTaskError, available_tasks, get_task
from mindmirror.student.tasks.base import Example


def test_builtin_tasks_registered() -> None:
    assert {"svamp", "cqa", "anli"} <= set(available_tasks())


def test_read_label_reads_a_refused_text_as_no_label() -> None:
    svamp = type(get_task("svamp"))

    class Refusing(svamp):
        def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
            if "?" in answer_text:
                raise TaskDataError("no questions")
            return super().parse_label(answer_text, example)

    task = Refusing()
    assert task.read_label("84 / 2") == "84 / 2"
    assert task.read_label("84 / 2 ?") is None
    with pytest.raises(TaskDataError):
        task.parse_label("84 / 2 ?")


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(UnknownTaskError, match="svamp"):
        get_task("gsm9k")


class TestSvamp:
    task = get_task("svamp")

    def test_canonical_labels_agree_across_spellings(self) -> None:
        assert self.task.normalize_label("( 84.0 / 2.0 )") == "84 / 2"
        assert self.task.normalize_label("(84 / 2)") == "84 / 2"
        assert self.task.normalize_label("( ( 17.0 + 15.0 ) + 2.0 )") == "( 17 + 15 ) + 2"
        assert self.task.normalize_label("(1 + 2) * (3 + 4)") == "( 1 + 2 ) * ( 3 + 4 )"

    def test_non_equation_label_is_refused(self) -> None:
        with pytest.raises(TaskDataError, match="not an arithmetic equation"):
            self.task.normalize_label("forty-two")

    def test_split_cot_reads_the_equation_and_cuts_the_next_shot(self) -> None:
        text = (
            "Luke scored 84 points after 2 rounds. 84 / 2 = 42. The answer is (84 / 2).\n\n"
            "Q: There are 120 students. The answer is (120 / 3)."
        )
        rationale, label = self.task.split_cot(text)
        assert rationale == "Luke scored 84 points after 2 rounds. 84 / 2 = 42."
        assert label == "84 / 2"

    def test_split_cot_without_answer_is_flagged(self) -> None:
        rationale, label = self.task.split_cot("So 11 / 3 = 3.333333")
        assert label is None
        assert rationale == "So 11 / 3 = 3.333333"

    def test_bare_and_nested_answers(self) -> None:
        assert self.task.parse_label(" ((32 + 42) - 35).") == "( 32 + 42 ) - 35"
        assert self.task.parse_label(" 84 / 2 = 42.") == "84 / 2"
        assert self.task.parse_label(" (x + 2).") is None

    def test_labels_starting_with_a_group_are_read_whole(self) -> None:
        # A student emits the canonical label, which drops only the outer parentheses.
        assert self.task.parse_label("( 10 + 9 ) - 17") == "( 10 + 9 ) - 17"
        assert self.task.parse_label(" (8 * 5) + 6.") == "( 8 * 5 ) + 6"
        assert self.task.parse_label(" (21 - 15). 6 stamps are left.") == "21 - 15"
        for label in ("( 10 + 9 ) - 17", "23 - ( 5 * 3 )", "( 1 + 2 ) * ( 3 + 4 )"):
            assert self.task.parse_label(label) == label

    def test_labels_are_written_from_the_parsers_tokens(self) -> None:
        # What the evaluator reads, the label writes: "x" and "×" multiply, "−" subtracts, a
        # number may start with its decimal point.
        assert self.task.normalize_label("5 x 3") == "5 * 3"
        assert self.task.normalize_label("(8 − 3) × 2") == "( 8 - 3 ) * 2"
        assert self.task.normalize_label(".5 * 4") == "0.5 * 4"
        assert self.task.parse_label(" (20 − 12).") == "20 - 12"
        for text in ("5 x 3", "(8 − 3) × 2", ".5 * 4", "1,200 / 3", "-(2 + 3)"):
            assert evaluate(self.task.normalize_label(text)) == evaluate(text)

    def test_correctness_is_by_value(self) -> None:
        assert self.task.is_correct("42 / 1", "( 84.0 / 2.0 )")
        assert self.task.is_correct("2 * 21", "84 / 2")
        assert not self.task.is_correct("84 * 2", "84 / 2")
        assert not self.task.is_correct(None, "84 / 2")
        assert self.task.answer_value("( 84.0 / 2.0 )") == 42.0

    def test_native_svamp_layout(self) -> None:
        record: ClassVar[dict] = {
            "ID": "chal-1",
            "Body": "A pack costs 76.",
            "Question": "How much?",
            "Equation": "( 76.0 - 25.0 )",
            "Answer": 51.0,
        }
        example = self.task.example_from_record(record, 0)
        assert example.id == "chal-1"
        assert example.question == "A pack costs 76.\nHow much?"
        assert example.label == "76 - 25"

    def test_format_cot_round_trips(self) -> None:
        text = self.task.format_cot("It is 4 + 4.", "4 + 4")
        assert self.task.split_cot(text) == ("It is 4 + 4.", "4 + 4")


class TestCqa:
    task = get_task("cqa")
    record: ClassVar[dict] = {
        "id": "q1",
        "question": "Where does a bum live?",
        "choices": ["bus depot", "beach", "train station", "bridge", "bridge"],
        "answer": "bridge",
    }

    def test_native_layout_formats_choices(self) -> None:
        example = self.task.example_from_record(self.record, 0)
        assert example.question.splitlines()[1:3] == ["Answer Choices:", "(a) bus depot"]
        assert example.label == "bridge"

    def test_parse_prefers_the_written_choice(self) -> None:
        example = self.task.example_from_record(self.record, 0)
        assert (
            self.task.split_cot("Bums live there. So the answer is (c) train station.", example)[1]
            == "train station"
        )
        # The letter decides when the text is not one of the choices.
        assert self.task.parse_label(" (d) a bridge of sorts", example) == "bridge"
        assert self.task.parse_label(" (b)", example) == "beach"
        assert self.task.parse_label(" the moon", example) is None

    def test_choices_recovered_from_generic_layout(self) -> None:
        native = self.task.example_from_record(self.record, 0)
        generic = self.task.example_from_record({"input": native.question, "label": "bridge"}, 3)
        assert self.task.parse_label(" (a) bus depot.", generic) == "bus depot"
        assert self.task.answer_sentence("beach", generic) == "So the answer is (b) beach."


class TestAnli:
    task = get_task("anli")

    def test_integer_labels_follow_hf_order(self) -> None:
        labels = [self.task.normalize_label(str(i)) for i in range(3)]
        assert labels == ["entailment", "neutral", "contradiction"]

    def test_bad_label(self) -> None:
        with pytest.raises(TaskDataError, match="entailment, neutral, contradiction"):
            self.task.normalize_label("maybe")

    def test_split_cot_cuts_next_premise(self) -> None:
        text = (
            "The premise says 4 routes. So the answer is entailment.\n\nPremise: x\n"
            "Hypothesis: y\nAnswer: So the answer is neutral."
        )
        assert self.task.split_cot(text) == ("The premise says 4 routes.", "entailment")
        assert self.task.parse_label(" contradiction, since it says Yorkshire.") == "contradiction"

    def test_native_layout(self) -> None:
        example = self.task.example_from_record(
            {"uid": "u1", "premise": "P.", "hypothesis": "H.", "label": 2, "reason": "r"}, 0
        )
        assert example.question == "Premise: P.\nHypothesis: H."
        assert example.label == "contradiction"


@pytest.mark.parametrize("name", ["svamp", "cqa", "anli"])
def test_exemplars_parse_with_their_own_task(name: str) -> None:
    from mindmirror.student.formats import parse_self_evaluation

    task = get_task(name)
    assert len(task.cot_exemplars) >= 2
    for exemplar in task.cot_exemplars:
        example = Example(id="x", question=exemplar.question)
        assert task.split_cot(exemplar.answer, example)[1] is not None, exemplar.answer
    assert len(task.self_eval_exemplars) >= 2
    for exemplar in task.self_eval_exemplars:
        assert parse_self_evaluation(exemplar.evaluation)[1] is not None


def test_yaml_task_spec(tmp_path) -> None:
    spec = tmp_path / "sentiment.yaml"
    spec.write_text(
        "name: sentiment\nlabels: [Positive, negative]\ninput_template: 'Review: {text}'\n"
        "cot_exemplars:\n"
        "  - {question: 'Review: A joy.', answer: 'It praises. So the answer is positive.'}\n"
    )
    task = get_task(str(spec))
    assert task.name == "sentiment"
    assert task.label_space == ("positive", "negative")
    example = task.example_from_record({"text": "Dull.", "label": "Negative"}, 7)
    assert (example.id, example.question, example.label) == ("7", "Review: Dull.", "negative")
    assert task.split_cot("Boring plot. So the answer is negative.")[1] == "negative"
    with pytest.raises(TaskDataError, match="not one of"):
        task.example_from_record({"text": "x", "label": "meh"}, 0)


def test_bad_task_spec_names_the_field(tmp_path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "Bad Name!", "labels": ["a", "a"]}))
    with pytest.raises(TaskDataError, match="name") as error:
        get_task(str(spec))
    assert "labels" in str(error.value)
