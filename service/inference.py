"""The inference layer: predict, explain (with self-consistency) and evaluate, in token ids.

Each operation builds the student's inputs in the format it was trained on, encodes them into
rows of token ids (:class:`~mindmirror.service.backends.Row`), hands the rows to ``generate``
and reads the generated ids back into plain results (the dataclasses below). ``generate`` is
the batching boundary: the HTTP layer binds it to one request's queue deadline and disconnect,
a test passes a fake. Nothing here knows HTTP; a request over a limit raises a
:mod:`mindmirror.service.rejections` error that the HTTP layer maps to its status. See
docs/service.md ("How a request flows").
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mindmirror.engine.decoding import Forcer
from mindmirror.service.backends import Row
from mindmirror.service.metrics import SCORING_QUEUE
from mindmirror.service.rejections import LimitExceeded, SelfEvaluationMissing
from mindmirror.service.runtime import StudentModel
from mindmirror.service.selfconsistency import Candidate, aggregate
from mindmirror.student.formats import Mode, Verdict, read_verdict
from mindmirror.student.tasks.base import RationaleCheck
from mindmirror.student.verdict_scores import VerdictScore

__all__ = ["Answer", "Evaluation", "Explanation", "Generate", "Inference", "Sampling"]

#: Random-stream numbers of sampled explain rows: labels and rationales never share a stream.
_LABEL_STREAM = 1
_RATIONALE_STREAM = 2


class Generate(Protocol):
    """Queue rows on an endpoint's batcher and wait for their results, in row order: generated
    ids, or on the scoring queue (:data:`~mindmirror.service.metrics.SCORING_QUEUE`) the
    verdict words' first-token log-probabilities.

    ``force`` queues even when the endpoint's queue is full: for follow-up work of a request
    that was already admitted (explain's self-evaluation round)."""

    async def __call__(
        self, endpoint: str, rows: Sequence[Row], *, force: bool = False
    ) -> list[Any]: ...


@dataclass(frozen=True)
class Answer:
    """A generated label, read by the task."""

    label_text: str  # what the student generated
    label: str | None  # the task's normalized label, None when it does not parse
    answer: Any  # the task's answer value (SVAMP: float), None when unreadable

    @property
    def valid(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class Sampling:
    """How /v1/explain samples: ``num_samples`` 1 is the greedy answer alone."""

    num_samples: int
    temperature: float
    top_k: int
    aggregate: Literal["vote", "best"]
    seed: int | None  # None: a random seed per request


@dataclass(frozen=True)
class Explanation:
    """The explained answer; the self-consistency fields only with ``num_samples`` > 1."""

    chosen: Candidate  # the label and rationale returned
    num_samples: int
    confidence: float | None = None
    support: int | None = None
    samples: tuple[Candidate, ...] | None = None  # every candidate, in sample order


@dataclass(frozen=True)
class Evaluation:
    scores: VerdictScore  # the scored, calibrated verdict
    generated_verdict: Verdict | None  # what greedy decoding wrote; None when unreadable
    verdict_text: str
    rationale: str | None  # None unless asked for

    @property
    def verdict(self) -> Verdict:
        return self.scores.verdict


def _sample_seed(seed: int, stream: int, index: int) -> int:
    """Sample ``index``'s own seed, fixed by the request's seed: the same seed gives the same
    samples (on the same backend and bundle)."""
    return (seed * 1_000_003 + stream * 7_919 + index) % 2**32


def _candidate(
    answer: Answer, rationale: str, scores: VerdictScore | None, check: RationaleCheck
) -> Candidate:
    return Candidate(
        answer.label_text,
        answer.label,
        answer.answer,
        rationale,
        verdict=scores.verdict if scores is not None else None,
        check=check,
        score=scores.score if scores is not None else None,
    )


async def _together(*calls: Awaitable[list[Any]]) -> list[list[Any]]:
    """Await queue calls side by side; if one fails (a full queue, a timeout), the others are
    cancelled, which withdraws their rows, rather than left running for nobody."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Inference:
    """The three operations over one student, with the deployment's request limits.

    Field names in the errors are the request fields of docs/service.md (``inputs``,
    ``max_new_tokens``...), so the HTTP layer reports them as they are."""

    def __init__(self, model: StudentModel, max_predict_inputs: int, max_samples: int) -> None:
        self.model = model
        self.max_predict_inputs = max_predict_inputs
        self.max_samples = max_samples

    async def predict(
        self, texts: Sequence[str], fields: Sequence[str], generate: Generate
    ) -> list[Answer]:
        """Labels for ``texts``, in order; ``fields`` names each text for a length error."""
        limit = self.max_predict_inputs
        if len(texts) > limit:
            raise LimitExceeded(
                "inputs",
                f"has {len(texts)} items; the limit is {limit} (MINDMIRROR_MAX_PREDICT_INPUTS)",
            )
        model = self.model
        prefixes = model.manifest.prefixes
        ids = model.encode_inputs([prefixes.cot_input(t, "predict") for t in texts], fields)
        rows = [Row(row, model.limits.max_new_tokens_predict) for row in ids]
        return [self._answer(text) for text in model.decode(await generate("predict", rows))]

    async def explain(
        self,
        question: str,
        max_new_tokens: int | None,
        sampling: Sampling,
        generate: Generate,
    ) -> Explanation:
        """A rationale and a label; with K samples, the one the student's own verdicts pick
        (the steps are in docs/service.md and :mod:`mindmirror.service.selfconsistency`).
        Rationale rows carry the model's calculator (when it runs), and every candidate the
        task's check of whether its rationale supports its label."""
        model = self.model
        max_new = self._rationale_budget(max_new_tokens)
        k = sampling.num_samples
        if k > self.max_samples:
            raise LimitExceeded(
                "num_samples", f"is {k}; the limit is {self.max_samples} (MINDMIRROR_MAX_SAMPLES)"
            )
        prefixes = model.manifest.prefixes
        label_ids, rationale_ids = model.encode_inputs(
            [prefixes.cot_input(question, "predict"), prefixes.cot_input(question, "explain")],
            ["input", "input"],
        )
        predict_max = model.limits.max_new_tokens_predict
        forcer = model.rationale_forcer()
        if k == 1:
            rows = [Row(label_ids, predict_max), Row(rationale_ids, max_new, forcer=forcer)]
            label_text, rationale = model.decode(await generate("explain", rows))
            answer = self._answer(label_text)
            check = model.check_rationale(question, rationale, answer.label)
            return Explanation(chosen=_candidate(answer, rationale, None, check), num_samples=1)

        seed = sampling.seed if sampling.seed is not None else secrets.randbits(32)

        def sampled(
            ids: list[int], budget: int, index: int, stream: int, forcer: Forcer | None = None
        ) -> Row:
            if index == 0:  # sample 0 is the greedy answer
                return Row(ids, budget, forcer=forcer)
            return Row(
                ids,
                budget,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                seed=_sample_seed(seed, stream, index),
                forcer=forcer,
            )

        rows = [sampled(label_ids, predict_max, i, _LABEL_STREAM) for i in range(k)]
        rows += [sampled(rationale_ids, max_new, i, _RATIONALE_STREAM, forcer) for i in range(k)]
        outputs = model.decode(await generate("explain", rows))
        answers = [self._answer(text) for text in outputs[:k]]
        rationales = outputs[k:]
        scored = model.manifest.self_evaluation
        judged: list[VerdictScore | None] = [None] * k
        if scored:
            judged = list(await self._judge(question, answers, rationales, generate))
        candidates = tuple(
            _candidate(a, rationale, scores, model.check_rationale(question, rationale, a.label))
            for a, rationale, scores in zip(answers, rationales, judged, strict=True)
        )
        decision = aggregate(candidates, sampling.aggregate, scored=scored)
        return Explanation(
            chosen=candidates[decision.index],
            num_samples=k,
            confidence=decision.confidence,
            support=decision.support,
            samples=candidates,
        )

    async def evaluate(
        self,
        question: str,
        reasoning: str,
        answer: str | None,
        include_rationale: bool,
        max_new_tokens: int | None,
        generate: Generate,
    ) -> Evaluation:
        """The student's scored verdict on a chain of thought (``answer`` appended as the task's
        answer sentence when given), what greedy decoding writes for it, and optionally its
        evaluation rationale. The scoring row and the generated rows run side by side."""
        model = self.model
        if not model.manifest.self_evaluation:
            raise SelfEvaluationMissing(
                "this student was trained without self-evaluation (manifest "
                "self_evaluation=false), so it cannot judge reasoning; distil it with "
                "self-evaluation data to use /v1/evaluate"
            )
        max_new = self._rationale_budget(max_new_tokens)
        if answer is not None:
            reasoning = model.format_cot(reasoning, answer)
        prefixes = model.manifest.prefixes
        modes: list[Mode] = ["predict", "explain"] if include_rationale else ["predict"]
        ids = model.encode_inputs(
            [prefixes.self_eval_input(question, reasoning, mode) for mode in modes],
            ["reasoning"] * len(modes),
        )
        rows = [Row(ids[0], model.limits.max_new_tokens_predict)]
        if include_rationale:
            rows.append(Row(ids[1], max_new))
        generated, scored = await _together(
            generate("evaluate", rows), generate(SCORING_QUEUE, [Row(ids[0], 1)])
        )
        texts = model.decode(generated)
        return Evaluation(
            scores=model.read_scores(scored[0]),
            generated_verdict=read_verdict(texts[0]),
            verdict_text=texts[0],
            rationale=texts[1] if include_rationale else None,
        )

    # ----- helpers ---------------------------------------------------------------------------
    def _rationale_budget(self, requested: int | None) -> int:
        """New tokens for a rationale: what the request asks, at most the deployment's cap."""
        cap = self.model.limits.max_new_tokens_explain
        max_new = requested or cap
        if max_new > cap:
            raise LimitExceeded(
                "max_new_tokens",
                f"is {max_new}; the limit is {cap} (MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN)",
            )
        return max_new

    def _answer(self, label_text: str) -> Answer:
        label, answer = self.model.read_label(label_text)
        return Answer(label_text, label, answer)

    async def _judge(
        self,
        question: str,
        answers: Sequence[Answer],
        rationales: Sequence[str],
        generate: Generate,
    ) -> list[VerdictScore]:
        """The student's scored verdict on each candidate, judging each distinct chain of
        thought once with the stage-1 input format. The chain is built from the normalized
        label when there is one."""
        model = self.model
        cots = [
            model.format_cot(rationale, a.label or a.label_text)
            for a, rationale in zip(answers, rationales, strict=True)
        ]
        distinct = list(dict.fromkeys(cots))
        prefixes = model.manifest.prefixes
        ids = model.encode_internal(
            [prefixes.self_eval_input(question, cot, "predict") for cot in distinct]
        )
        rows = [Row(row, 1) for row in ids]
        # The request was admitted with its K label and K rationale rows; its verdict round
        # must not be refused for a queue that filled meanwhile.
        scored = await generate(SCORING_QUEUE, rows, force=True)
        by_cot = {
            cot: model.read_scores(logprobs) for cot, logprobs in zip(distinct, scored, strict=True)
        }
        return [by_cot[cot] for cot in cots]
