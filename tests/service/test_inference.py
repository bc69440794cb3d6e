"""The inference layer without HTTP or a model: a real tokenizer and task, a scripted ``generate``.

The fake queue is what the batchers are to the layer: rows of token ids in, generated ids out
(or, on the scoring queue, verdict log-probabilities). Its replies are scripted per call, so
the tests can pin the rows each operation builds (inputs, budgets, greedy or sampled, seeds,
forced or not) and the plain results it reads back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from mindmirror.engine.ids import ModelIds
from mindmirror.service.backends import Row
from mindmirror.service.error_handlers import as_service_error
from mindmirror.service.errors import InvalidInput, SelfEvaluationUnavailable
from mindmirror.service.inference import Answer, Inference, Sampling
from mindmirror.service.metrics import SCORING_QUEUE
from mindmirror.service.rejections import LimitExceeded, Rejected, SelfEvaluationMissing
from mindmirror.service.runtime import Limits, StudentModel
from mindmirror.service.text import TextCodec
from mindmirror.student.bundle import GenerationDefaults, Manifest, write_manifest
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks import get_task
from mindmirror.student.verdict_scores import VerdictCalibration
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

QUESTION = "Tom has 3 apples. He gets 4 more. How many now?"
PAD, EOS = 0, 1


class NoBackend:
    """The layer never runs the model itself: everything goes through ``generate``."""

    def __call__(self, rows: Sequence[Row]) -> list[list[int]]:
        raise AssertionError("the inference layer called the backend directly")


def byte_tokenizer(path: Path) -> None:
    """One token per byte and ``</s>`` appended, as T5's tokenizer appends it: lengths are
    easy to reason about and decoding gives the text back exactly."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": PAD, "</s>": EOS, **{char: i + 2 for i, char in enumerate(alphabet)}}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken("<pad>"), AddedToken("</s>")])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", EOS)]
    )
    tokenizer.save(str(path))


def make_student(
    root: Path,
    self_evaluation: bool = True,
    max_input_tokens: int = 128,
    truncate_input: bool = False,
) -> StudentModel:
    root.mkdir(parents=True, exist_ok=True)
    byte_tokenizer(root / "tokenizer.json")
    manifest = write_manifest(
        root,
        Manifest(
            task="svamp",
            self_evaluation=self_evaluation,
            max_input_length=128,
            generation=GenerationDefaults(max_new_tokens_predict=16, max_new_tokens_explain=48),
        ),
    )
    codec = TextCodec(root, ModelIds(pad=PAD, eos=EOS, decoder_start=PAD, vocab_size=258))
    limits = Limits(max_input_tokens, truncate_input, 16, 48)
    return StudentModel(root, manifest, get_task("svamp"), codec, NoBackend(), limits)  # type: ignore[arg-type]


#: scripted first-token probabilities (correct, wrong, uncertain) of the verdict words
SURE_RIGHT, SURE_WRONG, LEANS_RIGHT = (0.9, 0.05, 0.05), (0.05, 0.9, 0.05), (0.5, 0.3, 0.2)


def logprobs(probabilities: tuple[float, float, float]) -> list[float]:
    return [math.log(p) for p in probabilities]


class FakeQueue:
    """``generate`` with scripted replies, one list per call, recording every call: texts for
    the generating queues, verdict probabilities for the scoring queue."""

    def __init__(self, model: StudentModel, *replies: list[str]) -> None:
        self.model = model
        self.replies = list(replies)
        self.calls: list[tuple[str, list[Row], bool]] = []

    async def __call__(
        self, endpoint: str, rows: Sequence[Row], *, force: bool = False
    ) -> list[list[int]]:
        self.calls.append((endpoint, list(rows), force))
        reply = self.replies.pop(0)
        assert len(reply) == len(rows), "scripted reply does not match the rows"
        if endpoint == SCORING_QUEUE:
            return [logprobs(probabilities) for probabilities in reply]
        # Generated ids carry no end-of-sequence token (the backends' contract).
        return [ids[:-1] for ids in self.model.codec.encode(reply)]

    def inputs(self, call: int) -> list[str]:
        return self.model.decode([row.input_ids for row in self.calls[call][1]])


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def student(tmp_path: Path) -> StudentModel:
    return make_student(tmp_path / "bundle")


def sampling(num_samples: int, seed: int | None = 7) -> Sampling:
    return Sampling(num_samples, temperature=0.7, top_k=50, aggregate="vote", seed=seed)


# ----- predict -----------------------------------------------------------------------------------
def test_predict_queues_one_greedy_row_per_input_and_reads_the_labels(
    student: StudentModel,
) -> None:
    queue = FakeQueue(student, ["3 + 4", "banana"])
    answers = run(
        Inference(student, 4, 8).predict([QUESTION, "q2"], ["inputs[0]", "inputs[1]"], queue)
    )
    assert answers == [Answer("3 + 4", "3 + 4", 7.0), Answer("banana", None, None)]
    assert [a.valid for a in answers] == [True, False]
    [(endpoint, rows, force)] = queue.calls
    assert (endpoint, force) == ("predict", False)
    assert queue.inputs(0) == [f"predict: {QUESTION}", "predict: q2"]
    assert [(r.max_new_tokens, r.temperature, r.seed) for r in rows] == [(16, 0.0, None)] * 2
    assert rows[0].input_ids[-1] == EOS


def test_predict_refuses_more_inputs_than_allowed_before_queueing(student: StudentModel) -> None:
    queue = FakeQueue(student)
    with pytest.raises(LimitExceeded) as caught:
        run(
            Inference(student, 2, 8).predict(
                ["a", "b", "c"], ["inputs[0]", "inputs[1]", "inputs[2]"], queue
            )
        )
    assert caught.value.field == "inputs"
    assert caught.value.message == (
        "inputs: has 3 items; the limit is 2 (MINDMIRROR_MAX_PREDICT_INPUTS)"
    )
    assert queue.calls == []


def test_an_input_over_the_token_limit_names_its_field_or_is_cut(tmp_path: Path) -> None:
    long = "x" * 40  # "predict: " + 40 bytes + </s> = 50 tokens
    strict = make_student(tmp_path / "strict", max_input_tokens=32)
    queue = FakeQueue(strict)
    with pytest.raises(LimitExceeded) as caught:
        run(Inference(strict, 4, 8).predict(["ok", long], ["inputs[0]", "inputs[1]"], queue))
    assert caught.value.field == "inputs[1]"
    assert caught.value.detail == (
        "is 50 tokens with the task prefix; the limit is 32 "
        "(MINDMIRROR_MAX_INPUT_TOKENS; MINDMIRROR_TRUNCATE_INPUT=true cuts instead)"
    )
    assert queue.calls == []

    cutting = make_student(tmp_path / "cutting", max_input_tokens=32, truncate_input=True)
    queue = FakeQueue(cutting, ["1 + 1"])
    run(Inference(cutting, 4, 8).predict([long], ["input"], queue))
    [row] = queue.calls[0][1]
    assert len(row.input_ids) == 32
    assert row.input_ids[-1] == EOS


# ----- explain -----------------------------------------------------------------------------------
def test_explain_with_one_sample_is_a_greedy_label_and_rationale(student: StudentModel) -> None:
    queue = FakeQueue(student, ["3 + 4", "Tom had 3 and got 4."])
    result = run(Inference(student, 4, 8).explain(QUESTION, 20, sampling(1), queue))
    assert result.num_samples == 1
    assert (result.chosen.label_text, result.chosen.answer, result.chosen.valid) == (
        "3 + 4",
        7.0,
        True,
    )
    assert result.chosen.rationale == "Tom had 3 and got 4."
    assert (result.confidence, result.support, result.samples) == (None, None, None)
    [(endpoint, rows, force)] = queue.calls
    assert (endpoint, force) == ("explain", False)
    assert queue.inputs(0) == [f"predict: {QUESTION}", f"explain: {QUESTION}"]
    assert [(r.max_new_tokens, r.temperature) for r in rows] == [(16, 0.0), (20, 0.0)]


def test_explain_limits_are_checked_in_order_before_queueing(student: StudentModel) -> None:
    inference = Inference(student, 4, 8)
    queue = FakeQueue(student)
    with pytest.raises(LimitExceeded) as caught:
        run(inference.explain(QUESTION, 49, sampling(9), queue))
    assert caught.value.message == (
        "max_new_tokens: is 49; the limit is 48 (MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN)"
    )
    with pytest.raises(LimitExceeded) as caught:
        run(inference.explain(QUESTION, None, sampling(9), queue))
    assert caught.value.message == "num_samples: is 9; the limit is 8 (MINDMIRROR_MAX_SAMPLES)"
    assert queue.calls == []


LABELS = ["3 - 4", "3 + 4", "4 + 3", "3 - 4"]
#: each supports its label (the rationale check is tested below)
RATIONALES = ["He lost 4: 3 - 4 = -1.", "3 + 4 = 7.", "3 + 4 = 7.", "He lost 4: 3 - 4 = -1."]


def test_self_consistency_samples_judges_each_distinct_chain_once_and_votes(
    student: StudentModel,
) -> None:
    # Samples 0 and 3 give the same chain of thought: three distinct chains to judge.
    queue = FakeQueue(student, LABELS + RATIONALES, [SURE_WRONG, SURE_RIGHT, LEANS_RIGHT])
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(4, seed=7), queue))

    endpoint, rows, force = queue.calls[0]
    assert (endpoint, force) == ("explain", False)
    assert queue.inputs(0) == [f"predict: {QUESTION}"] * 4 + [f"explain: {QUESTION}"] * 4
    assert [r.max_new_tokens for r in rows] == [16] * 4 + [48] * 4
    # Sample 0 of each stream is greedy; the others sample with the request's settings from
    # seeds derived from seed 7 exactly as the service always has (same seed, same samples).
    assert [(r.temperature, r.top_k, r.seed) for r in rows] == [
        (0.0, 0, None),
        (0.7, 50, 7007941),
        (0.7, 50, 7007942),
        (0.7, 50, 7007943),
        (0.0, 0, None),
        (0.7, 50, 7015860),
        (0.7, 50, 7015861),
        (0.7, 50, 7015862),
    ]

    endpoint, rows, force = queue.calls[1]
    # Scored, not generated; admitted already: never refused for a full queue.
    assert (endpoint, force) == (SCORING_QUEUE, True)
    assert queue.inputs(1) == [
        f"predict: evaluate: {QUESTION}\nreasoning: He lost 4: 3 - 4 = -1. The answer is (3 - 4).",
        f"predict: evaluate: {QUESTION}\nreasoning: 3 + 4 = 7. The answer is (3 + 4).",
        f"predict: evaluate: {QUESTION}\nreasoning: 3 + 4 = 7. The answer is (4 + 3).",
    ]
    assert [(r.max_new_tokens, r.temperature) for r in rows] == [(1, 0.0)] * 3

    # Uncalibrated: score = P(correct) / (P(correct) + P(wrong)), verdict at 0.5.
    scores = [0.05 / 0.95, 0.9 / 0.95, 0.5 / 0.8, 0.05 / 0.95]
    assert [s.score for s in result.samples] == pytest.approx(scores)
    assert [s.verdict for s in result.samples] == [
        Verdict.WRONG,
        Verdict.CORRECT,
        Verdict.CORRECT,
        Verdict.WRONG,
    ]
    # 7.0 (3 + 4 and 4 + 3) weighs 0.947 + 0.625 against 0.105 for -1; its best-scored,
    # earliest sample is returned, and the confidence is that weight over the 4 samples.
    assert result.chosen == result.samples[1]
    assert (result.num_samples, result.support) == (4, 2)
    assert result.confidence == pytest.approx((scores[1] + scores[2]) / 4)


def test_without_self_evaluation_the_vote_is_plain_agreement(tmp_path: Path) -> None:
    student = make_student(tmp_path / "bundle", self_evaluation=False)
    queue = FakeQueue(student, LABELS + RATIONALES)
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(4), queue))
    assert len(queue.calls) == 1  # no verdict round
    assert [s.verdict for s in result.samples] == [None] * 4
    # A 2-2 tie goes to the answer sampled first.
    assert result.chosen == result.samples[0]
    assert (result.confidence, result.support) == (0.5, 2)


def test_a_long_chain_to_judge_is_cut_not_refused(tmp_path: Path) -> None:
    student = make_student(tmp_path / "bundle", max_input_tokens=80)
    long_rationale = "He counted them all again, one by one, very slowly."
    queue = FakeQueue(student, ["3 + 4", "3 + 4", long_rationale, long_rationale], [SURE_RIGHT])
    result = run(Inference(student, 4, 8).explain(QUESTION, None, sampling(2), queue))
    [row] = queue.calls[1][1]
    assert len(row.input_ids) == 80
    assert row.input_ids[-1] == EOS
    assert result.samples[0].verdict is Verdict.CORRECT


# ----- evaluate ----------------------------------------------------------------------------------
def test_evaluate_scores_and_generates_the_chain_with_the_answer_sentence(
    student: StudentModel,
) -> None:
    # Greedy decoding writes "correct", but the scores lean the other way: the scored verdict
    # is the one returned, the generated one is reported beside it.
    queue = FakeQueue(student, ["correct", "The steps match."], [(0.45, 0.5, 0.05)])
    result = run(
        Inference(student, 4, 8).evaluate(QUESTION, "He got 4 more.", "3 + 4", True, 20, queue)
    )
    assert (result.verdict, result.generated_verdict) == (Verdict.WRONG, Verdict.CORRECT)
    assert (result.verdict_text, result.rationale) == ("correct", "The steps match.")
    assert result.scores.score == pytest.approx(0.45 / 0.95)
    assert result.scores.probabilities == pytest.approx(
        {"correct": 0.45, "wrong": 0.5, "uncertain": 0.05}
    )
    (endpoint, rows, force), (scoring, scored_rows, scoring_force) = queue.calls
    assert (endpoint, force, scoring, scoring_force) == ("evaluate", False, SCORING_QUEUE, False)
    chain = f"{QUESTION}\nreasoning: He got 4 more. The answer is (3 + 4)."
    assert queue.inputs(0) == [f"predict: evaluate: {chain}", f"explain: evaluate: {chain}"]
    assert queue.inputs(1) == [f"predict: evaluate: {chain}"]
    assert [r.max_new_tokens for r in rows] == [16, 20]
    assert [r.max_new_tokens for r in scored_rows] == [1]

    queue = FakeQueue(student, ["no idea"], [SURE_RIGHT])
    quick = run(
        Inference(student, 4, 8).evaluate(
            QUESTION, "r. The answer is (1).", None, False, None, queue
        )
    )
    assert (quick.verdict, quick.generated_verdict, quick.rationale) == (
        Verdict.CORRECT,
        None,
        None,
    )
    assert queue.inputs(0) == [f"predict: evaluate: {QUESTION}\nreasoning: r. The answer is (1)."]


def test_a_calibrated_bundle_moves_score_and_verdict(tmp_path: Path) -> None:
    student = make_student(tmp_path / "bundle")
    student.calibration = VerdictCalibration(slope=2.0, intercept=-1.0, threshold=0.7)
    queue = FakeQueue(student, ["correct"], [LEANS_RIGHT])
    result = run(Inference(student, 4, 8).evaluate(QUESTION, "r.", "1", False, None, queue))
    margin = math.log(0.5 / 0.3)
    assert result.scores.margin == pytest.approx(margin)
    assert result.scores.score == pytest.approx(1 / (1 + math.exp(-(2 * margin - 1))))
    assert result.verdict is Verdict.WRONG  # 0.58 is under the threshold 0.7


def test_a_failed_queue_call_withdraws_the_other(student: StudentModel) -> None:
    """Evaluate's two queue calls run side by side; when one is refused the other is cancelled,
    not left to run for nobody."""
    cancelled: list[str] = []

    async def generate(endpoint: str, rows: Sequence[Row], *, force: bool = False) -> list[Any]:
        if endpoint == SCORING_QUEUE:
            raise RuntimeError("queue full")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(endpoint)
            raise
        return []

    with pytest.raises(RuntimeError, match="queue full"):
        run(Inference(student, 4, 8).evaluate(QUESTION, "r.", "1", True, None, generate))
    assert cancelled == ["evaluate"]


def test_evaluate_refusals(tmp_path: Path, student: StudentModel) -> None:
    queue = FakeQueue(student)
    with pytest.raises(LimitExceeded) as over:
        run(Inference(student, 4, 8).evaluate("q", "r", None, True, 49, queue))
    assert over.value.field == "max_new_tokens"
    unable = make_student(tmp_path / "noeval", self_evaluation=False)
    with pytest.raises(SelfEvaluationMissing) as missing:
        # Checked first: a student that cannot judge says so whatever else is asked.
        run(Inference(unable, 4, 8).evaluate("q", "r", None, True, 49, queue))
    assert "trained without self-evaluation" in missing.value.message
    assert missing.value.message.endswith("to use /v1/evaluate")
    assert queue.calls == []


# ----- the HTTP mapping --------------------------------------------------------------------------
def test_each_refusal_has_one_http_status() -> None:
    limit = as_service_error(LimitExceeded("num_samples", "is 9; the limit is 8"))
    assert isinstance(limit, InvalidInput)
    assert (limit.status, limit.type, limit.field, limit.detail) == (
        422,
        "invalid_request",
        "num_samples",
        "is 9; the limit is 8",
    )
    assert limit.message == "num_samples: is 9; the limit is 8"
    unable = as_service_error(SelfEvaluationMissing("cannot judge"))
    assert isinstance(unable, SelfEvaluationUnavailable)
    assert (unable.status, unable.type, unable.message) == (
        409,
        "self_evaluation_unavailable",
        "cannot judge",
    )
    with pytest.raises(TypeError):
        as_service_error(Rejected("a refusal nobody mapped"))
