import pytest
from mindmirror.student.formats import (
    DEFAULT_PREFIXES,
    Verdict,
    parse_self_evaluation,
    read_verdict,
    verdict_sentence,
)


def test_cot_inputs() -> None:
    assert DEFAULT_PREFIXES.cot_input(" Q? ", "predict") == "predict: Q?"
    assert DEFAULT_PREFIXES.cot_input("Q?", "explain") == "explain: Q?"


def test_self_eval_input_carries_question_and_reasoning() -> None:
    text = DEFAULT_PREFIXES.self_eval_input("Q?", "R. The answer is (1).", "explain")
    assert text == "explain: evaluate: Q?\nreasoning: R. The answer is (1)."


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        DEFAULT_PREFIXES.cot_input("Q", "answer")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rationale", "verdict"),
    [
        (
            "Evaluation:\n\nAll steps hold.\n\nEvaluation result: the given answer is correct.",
            "All steps hold.",
            Verdict.CORRECT,
        ),
        (
            "The sum is off.\nEvaluation result: The given answer is WRONG.",
            "The sum is off.",
            Verdict.WRONG,
        ),
        ("Hmm.\nEvaluation result: incorrect", "Hmm.", Verdict.WRONG),
        (
            "Can't tell. Evaluation result: the given answer is uncertain.",
            "Can't tell.",
            Verdict.UNCERTAIN,
        ),
        ("Evaluation: looks fine to me", "looks fine to me", None),
    ],
)
def test_parse_self_evaluation(text: str, rationale: str, verdict: Verdict | None) -> None:
    assert parse_self_evaluation(text) == (rationale, verdict)


def test_verdict_sentence_round_trips() -> None:
    for verdict in Verdict:
        assert parse_self_evaluation("ok. " + verdict_sentence(verdict))[1] is verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("correct", Verdict.CORRECT),
        (" Wrong. ", Verdict.WRONG),
        ("INCORRECT", Verdict.WRONG),
        ("uncertain.", Verdict.UNCERTAIN),
        ("The steps add up. Evaluation result: the given answer is wrong.", Verdict.WRONG),
        ("perhaps", None),
        ("correctly", None),
        ("", None),
    ],
)
def test_read_verdict_reads_the_bare_word_or_a_verdict_sentence(
    text: str, verdict: Verdict | None
) -> None:
    assert read_verdict(text) is verdict
