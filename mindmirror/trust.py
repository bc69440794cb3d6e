"""How far the served student's reasoning can be trusted, measured on a labelled split.

Runs the service's own inference layer (:class:`~mindmirror.service.inference.Inference`) over
its own batchers and backend in this process, so what is measured is what ``/v1/predict``,
``/v1/explain`` and ``/v1/evaluate`` return (scored verdicts, calibration, the calculator and
the consistency check included), without HTTP in between:

* **verdicts against the truth**: the student's scored verdict on reasonings whose truth is
  known (:class:`Reasoning`; for arith and SVAMP-style tasks the simulated teacher writes them
  with a seed of its own, about half of them wrong): AUROC of the score, balanced accuracy of
  the calibrated verdict, and how often greedy decoding writes "correct";
* **explanations**: the share of greedy ``/v1/explain`` answers whose rationale the task's check
  finds consistent with the answer, and the share of stated arithmetic steps that are right;
* **accuracy**: greedy labels against self-consistency over ``num_samples`` samples.

``bench/self_evaluation.py`` prints it for any bundle; ``mindmirror demo`` reports it in its
stage table.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mindmirror.service.backends import Row
from mindmirror.service.batching import BatchLimits, ModelWorker
from mindmirror.service.inference import Inference, Sampling
from mindmirror.service.metrics import Metrics
from mindmirror.service.runtime import StudentModel
from mindmirror.service.state import build_batchers
from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.formats import Verdict
from mindmirror.student.tasks import Example, Task
from mindmirror.student.verdict_scores import auroc, balanced_accuracy

__all__ = ["Reasoning", "TrustReport", "measure_trust", "reasonings_from_records"]


@dataclass(frozen=True)
class Reasoning:
    """A chain of thought (ending with its answer sentence) whose truth is known."""

    example: Example
    text: str
    right: bool


def reasonings_from_records(task: Task, records: Sequence[DistillationRecord]) -> list[Reasoning]:
    """The teacher chains of thought of labelled records, right or wrong by the label."""
    reasonings = []
    for record in records:
        if record.label is None:
            continue
        example = record.example()
        for cot in record.cots:
            text = task.trim_completion(cot.text)
            if text:
                reasonings.append(
                    Reasoning(example, text, task.is_correct(cot.answer, record.label))
                )
    return reasonings


@dataclass(frozen=True)
class TrustReport:
    questions: int
    reasonings: int  # judged reasonings of known truth
    right_reasonings: int
    verdict_auroc: float | None
    verdict_balanced_accuracy: float | None  # of the calibrated verdict
    generated_correct_share: float  # how often greedy decoding writes "correct"
    threshold: float
    explain_consistent: float | None  # share of greedy explanations the task's check accepts
    explain_checked: int  # explanations the task could check
    step_accuracy: float | None  # stated arithmetic steps that are right
    steps: int
    greedy_accuracy: float  # /v1/predict
    explain_accuracy: float  # /v1/explain, one sample
    self_consistency_accuracy: float | None  # /v1/explain, num_samples samples
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _LocalQueues:
    """The service's batchers over one model, in this process (no HTTP)."""

    def __init__(self, model: StudentModel, batch_size: int, max_batch_tokens: int) -> None:
        self.model = model
        self.worker = ModelWorker()
        limits = BatchLimits(
            max_batch_size=batch_size,
            max_wait_s=0.002,
            max_batch_tokens=max_batch_tokens,
            max_queue=1 << 30,
        )
        self.batchers = build_batchers(model, self.worker, limits, Metrics())

    def start(self) -> None:
        for batcher in self.batchers.values():
            batcher.start()

    async def generate(
        self, endpoint: str, rows: Sequence[Row], *, force: bool = False
    ) -> list[Any]:
        items = self.batchers[endpoint].submit(rows, "trust", math.inf, force=True)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        await asyncio.gather(*(b.close(timeout_s=1.0) for b in self.batchers.values()))
        await asyncio.to_thread(self.worker.shutdown)


async def _measure(
    model: StudentModel,
    examples: Sequence[Example],
    reasonings: Sequence[Reasoning],
    num_samples: int,
    concurrency: int,
    batch_size: int,
) -> TrustReport:
    task = model.task
    tokens = max(model.limits.max_input_tokens + model.limits.max_new_tokens_explain, 1)
    queues = _LocalQueues(model, batch_size, tokens * batch_size)
    queues.start()
    inference = Inference(model, max_predict_inputs=1 << 30, max_samples=max(num_samples, 1))
    gate = asyncio.Semaphore(concurrency)

    async def limited(call: Any) -> Any:
        async with gate:
            return await call

    try:
        await queues.worker.call(model.setup)
        judged = await asyncio.gather(
            *(
                limited(
                    inference.evaluate(
                        r.example.question, r.text, None, False, None, queues.generate
                    )
                )
                for r in reasonings
            )
        )
        answers = await inference.predict(
            [e.question for e in examples], ["input"] * len(examples), queues.generate
        )
        greedy = Sampling(1, temperature=0.7, top_k=50, aggregate="vote", seed=0)
        explained = await asyncio.gather(
            *(
                limited(inference.explain(e.question, None, greedy, queues.generate))
                for e in examples
            )
        )
        voted = None
        if num_samples > 1:
            sampled = Sampling(num_samples, temperature=0.7, top_k=50, aggregate="vote", seed=0)
            voted = await asyncio.gather(
                *(
                    limited(inference.explain(e.question, None, sampled, queues.generate))
                    for e in examples
                )
            )
    finally:
        await queues.close()

    truths = [r.right for r in reasonings]
    checks = [
        task.check_rationale(x.chosen.rationale, x.chosen.label, e)
        for x, e in zip(explained, examples, strict=True)
    ]
    checked = [c for c in checks if c.consistent is not None]
    steps = sum(c.steps for c in checks)

    def accuracy(labels: Sequence[str | None]) -> float:
        right = sum(
            task.is_correct(label, e.label) for label, e in zip(labels, examples, strict=True)
        )
        return right / len(examples) if examples else 0.0

    return TrustReport(
        questions=len(examples),
        reasonings=len(reasonings),
        right_reasonings=sum(truths),
        verdict_auroc=auroc([j.scores.score for j in judged], truths),
        verdict_balanced_accuracy=balanced_accuracy(
            [j.verdict is Verdict.CORRECT for j in judged], truths
        ),
        generated_correct_share=(
            sum(j.generated_verdict is Verdict.CORRECT for j in judged) / len(judged)
            if judged
            else 0.0
        ),
        threshold=model.calibration.threshold,
        explain_consistent=(
            sum(bool(c.consistent) for c in checked) / len(checked) if checked else None
        ),
        explain_checked=len(checked),
        step_accuracy=sum(c.steps_right for c in checks) / steps if steps else None,
        steps=steps,
        greedy_accuracy=accuracy([a.label for a in answers]),
        explain_accuracy=accuracy([x.chosen.label for x in explained]),
        self_consistency_accuracy=(
            accuracy([x.chosen.label for x in voted]) if voted is not None else None
        ),
        num_samples=num_samples,
    )


def measure_trust(
    model: StudentModel,
    examples: Sequence[Example],
    reasonings: Sequence[Reasoning],
    *,
    num_samples: int = 5,
    concurrency: int = 64,
    batch_size: int = 32,
) -> TrustReport:
    """Load ``model``'s runtime and measure (see the module docstring). ``examples`` must have
    labels; ``reasonings`` may be empty for a student without self-evaluation."""
    if any(example.label is None for example in examples):
        raise ValueError("every example needs a label to measure accuracy against")
    if reasonings and not model.manifest.self_evaluation:
        raise ValueError("this student was trained without self-evaluation: it judges nothing")
    return asyncio.run(_measure(model, examples, reasonings, num_samples, concurrency, batch_size))
