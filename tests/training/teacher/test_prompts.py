from mindmirror.student.formats import verdict_sentence
from mindmirror.student.tasks import Example, get_task
from mindmirror.training.teacher.prompts import (
    SELF_EVAL_INSTRUCTION,
    Planner,
    SamplingParams,
    cot_messages,
    self_eval_messages,
    slot_key,
)

SVAMP = get_task("svamp")
EXAMPLE = Example(id="x", question="Tom has 3 apples and buys 4.\nHow many?", label="3 + 4")


def test_cot_prompt_is_few_shot_chat_ending_with_the_question() -> None:
    messages = cot_messages(SVAMP, EXAMPLE)
    assert messages[0] == {"role": "system", "content": SVAMP.teacher_instruction}
    # one user/assistant pair per exemplar, then the question
    assert len(messages) == 2 + 2 * len(SVAMP.cot_exemplars)
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(SVAMP.cot_exemplars)
    assert messages[2]["content"] == SVAMP.cot_exemplars[0].answer
    assert messages[-1] == {"role": "user", "content": f"Q: {EXAMPLE.question}"}
    assert len(cot_messages(SVAMP, EXAMPLE, shots=1)) == 4
    assert len(cot_messages(SVAMP, EXAMPLE, shots=0)) == 2


def test_self_eval_prompt_demonstrates_the_verdict_line() -> None:
    messages = self_eval_messages(SVAMP, EXAMPLE, "3 + 4 = 7. The answer is (3 + 4).")
    assert messages[0]["content"] == SELF_EVAL_INSTRUCTION
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    verdicts = {"correct", "wrong", "uncertain"}
    assert answers
    assert all(any(a.endswith(verdict_sentence(v)) for v in verdicts) for a in answers)
    assert "Given answer: 3 + 4 = 7. The answer is (3 + 4)." in messages[-1]["content"]
    assert EXAMPLE.question in messages[-1]["content"]


def test_keys_change_with_model_messages_params_and_index() -> None:
    messages = cot_messages(SVAMP, EXAMPLE)
    params = SamplingParams()
    base = slot_key("m", messages, params, 0)
    assert base == slot_key("m", list(messages), SamplingParams(), 0)  # stable
    others = {
        slot_key("m2", messages, params, 0),
        slot_key("m", messages[:-1], params, 0),
        slot_key("m", messages, SamplingParams(temperature=0.9), 0),
        slot_key("m", messages, SamplingParams(max_tokens=10), 0),
        slot_key("m", messages, SamplingParams(seed=1), 0),
        slot_key("m", messages, params, 1),
    }
    assert base not in others
    assert len(others) == 6


def test_planner_slots_and_evaluation_policy() -> None:
    planner = Planner(SVAMP, "m", 3, 2, SamplingParams(), SamplingParams())
    cots = planner.cot_slots(EXAMPLE)
    assert [s.index for s in cots] == [0, 1, 2]
    assert len({s.key for s in cots}) == 3
    text = "3 + 4 = 7. The answer is (3 + 4)."
    # CoT k's evaluations are samples k*M .. k*M+M-1: identical CoT texts still get their own
    first = planner.eval_slots(EXAMPLE, 0, text)
    second = planner.eval_slots(EXAMPLE, 1, text)
    assert [s.index for s in first] == [0, 1]
    assert [s.index for s in second] == [2, 3]
    assert not {s.key for s in first} & {s.key for s in second}
    assert planner.wants_evaluation(EXAMPLE, text)
    assert not planner.wants_evaluation(EXAMPLE, "no idea")
    lenient = Planner(SVAMP, "m", 3, 2, SamplingParams(), SamplingParams(), evaluate_unparsed=True)
    assert lenient.wants_evaluation(EXAMPLE, "no idea")
    # The teacher judges the CoT cut where it ran on into a next few-shot item.
    assert "Q: next" not in planner.eval_messages(EXAMPLE, text + "\n\nQ: next")[-1]["content"]


def test_request_seed_differs_per_sample() -> None:
    assert SamplingParams(seed=10).request_seed(3) == 13
    assert SamplingParams().request_seed(3) is None
