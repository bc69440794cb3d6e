"""The teacher run: plan every slot, make only the calls the store lacks, commit each answer.

Workers (``--concurrency`` of them, fewer if the backend caps it) take jobs from one queue. A
job is one request for one or more slots of the same prompt (``n`` samples). When a chain of
thought arrives, its self-evaluation jobs are queued at once (ahead of new CoT jobs), so
examples complete early and a partial run exports whole examples.

Per job: reserve its worst-case cost against ``--max-cost`` (stop cleanly if it does not fit),
wait for the rate limiter, call the backend, retry transient failures with backoff (honouring
Retry-After), then commit the call record and its results in one transaction, and only then
count it. Unparseable answers are stored like any other (the raw text is the record) and
counted; they never become labels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mindmirror.student.formats import parse_self_evaluation
from mindmirror.student.tasks import Example
from mindmirror.training.teacher.backends.base import (
    Completion,
    GenerationRequest,
    RequestRejected,
    TeacherBackend,
    TeacherFatalError,
    TransientTeacherError,
)
from mindmirror.training.teacher.limits import (
    Budget,
    Prices,
    RateLimiter,
    RetryPolicy,
    TokenEstimator,
)
from mindmirror.training.teacher.prompts import Kind, Message, Planner, SamplingParams, Slot
from mindmirror.training.teacher.store import CallRecord, Result, Store

__all__ = [
    "Job",
    "RunOptions",
    "RunReport",
    "TeacherRunner",
    "n_support_key",
    "plan_evaluations",
    "plan_example",
]

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prices: Prices = field(default_factory=Prices)
    max_cost: float | None = None
    progress: bool = True
    #: stop when this many requests in a row were rejected without any success: the
    #: settings are wrong (e.g. a parameter the model does not accept), not the inputs
    max_rejected_in_a_row: int = 10


@dataclass
class RunReport:
    run_id: str
    slots_total: int = 0
    slots_done_before: int = 0
    samples: int = 0  # slots filled by this invocation
    calls: int = 0  # successful calls
    attempts: int = 0
    retries: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    usage_estimated: bool = False
    cots_unparsed: int = 0
    evals_unparsed: int = 0
    slots_left: int = 0
    stopped: str | None = None  # why the run stopped early (budget, fatal error)
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        return self.slots_left == 0 and self.stopped is None

    def summary(self) -> str:
        lines = [
            f"run {self.run_id}: {self.samples} samples from {self.calls} calls "
            f"({self.retries} retries, {self.failed_requests} failed requests) in "
            f"{self.elapsed:.1f}s; {self.slots_done_before} were already stored",
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion"
            f"{' (estimated: the endpoint reported no usage)' if self.usage_estimated else ''}; "
            f"cost ${self.cost:.4f}",
            f"unparseable (kept, flagged, never used as labels): {self.cots_unparsed} chains "
            f"of thought, {self.evals_unparsed} self-evaluations",
        ]
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}")
        if self.slots_left:
            lines.append(
                f"{self.slots_left} samples still missing; rerun the same command to continue "
                "(nothing already stored is requested again)"
            )
        return "\n".join(lines)


@dataclass
class Job:
    kind: Kind
    example: Example
    messages: list[Message]
    params: SamplingParams
    slots: list[Slot]
    parent: str | None = None
    #: for a self-evaluation: the judged chain of thought as the prompt shows it
    reasoning: str | None = None

    def request(self) -> GenerationRequest:
        """The backend request for this job's slots (one prompt, ``len(slots)`` samples)."""
        return GenerationRequest(
            self.messages,
            self.params,
            len(self.slots),
            self.slots[0].index,
            kind=self.kind,
            example=self.example,
            reasoning=self.reasoning,
        )


def verdict_missing(text: str) -> bool:
    return parse_self_evaluation(text)[1] is None


def plan_example(store: Store, planner: Planner, example: Example, report: RunReport) -> list[Job]:
    """The jobs an example still needs: its missing CoTs, and the missing self-evaluations of
    its stored CoTs. Updates the report's totals and counts of what is already stored."""
    slots = planner.cot_slots(example)
    done = store.get_results([slot.key for slot in slots])
    report.slots_total += len(slots) * (1 + planner.n_evals)
    report.slots_done_before += len(done)
    jobs = []
    missing = [slot for slot in slots if slot.key not in done]
    if missing:
        jobs.append(Job("cot", example, planner.cot_messages(example), planner.cot_params, missing))
    for slot in slots:
        if slot.key in done:
            job = plan_evaluations(
                store, planner, example, slot, done[slot.key]["text"], report, initial=True
            )
            if job is not None:
                jobs.append(job)
    return jobs


def plan_evaluations(
    store: Store,
    planner: Planner,
    example: Example,
    cot: Slot,
    cot_text: str,
    report: RunReport,
    initial: bool,
) -> Job | None:
    """The self-evaluation job for one stored CoT, or None when nothing is missing.

    A CoT without a parseable answer is counted and, unless ``evaluate_unparsed``, gets no
    self-evaluations: the report's total shrinks by the M it would have had.
    """
    if planner.task.split_cot(cot_text, example)[1] is None:
        report.cots_unparsed += 1
    if not planner.wants_evaluation(example, cot_text):
        report.slots_total -= planner.n_evals
        return None
    slots = planner.eval_slots(example, cot.index, cot_text)
    done = store.get_results([slot.key for slot in slots])
    if initial:
        report.slots_done_before += len(done)
        report.evals_unparsed += sum(verdict_missing(row["text"]) for row in done.values())
    missing = [slot for slot in slots if slot.key not in done]
    if not missing:
        return None
    return Job(
        "self_eval",
        example,
        planner.eval_messages(example, cot_text),
        planner.eval_params,
        missing,
        parent=cot.key,
        reasoning=planner.judged_reasoning(cot_text),
    )


def n_support_key(backend: TeacherBackend) -> str:
    return (
        f"supports_n:{backend.name}:{getattr(backend, 'base_url', None) or ''}:{backend.model_id}"
    )


class TeacherRunner:
    """Runs one teacher configuration over a list of examples, resumably.

    It does not ask the backend whether it can answer the task: :func:`teach
    <mindmirror.training.teacher.teach.teach>` does that once, before anything is planned (a
    dry run never builds a runner), and a caller that wires a runner itself does it too."""

    def __init__(
        self,
        store: Store,
        backend: TeacherBackend,
        planner: Planner,
        examples: Sequence[Example],
        options: RunOptions | None = None,
    ) -> None:
        if planner.model != backend.model_id:
            raise ValueError("the planner's model must be the backend's model_id")
        self.store = store
        self.backend = backend
        self.planner = planner
        self.task = planner.task
        self.examples = list(examples)
        self.options = options or RunOptions()
        self.budget = Budget(self.options.max_cost)
        self.limiter = RateLimiter(self.options.rpm, self.options.tpm)
        self.estimator = TokenEstimator(store.usage_stats(backend.model_id)[0])
        self.supports_n = backend.supports_n
        if self.supports_n is None:
            known = store.get_meta(n_support_key(backend))
            self.supports_n = None if known is None else known == "1"
        self._queue: asyncio.PriorityQueue[tuple[int, int, Job]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._planned: set[str] = set()
        self._stopping = False
        self._fatal: BaseException | None = None
        self._rejected_in_a_row = 0
        self._progress: Any = None
        self.report = RunReport(run_id="")

    # ----- planning -------------------------------------------------------------------------
    def _enqueue(self, job: Job) -> None:
        # A slot is never in flight twice (a safety net: keys are unique by construction).
        slots = [slot for slot in job.slots if slot.key not in self._planned]
        if not slots:
            return
        self._planned.update(slot.key for slot in slots)
        # Self-evaluations first: finish examples before starting new ones.
        priority = 0 if job.kind == "self_eval" else 1
        groups = [slots] if self.supports_n is not False else [[slot] for slot in slots]
        for group in groups:
            self._queue.put_nowait(
                (priority, next(self._order), dataclasses.replace(job, slots=group))
            )

    def _plan_example(self, example: Example) -> None:
        for job in plan_example(self.store, self.planner, example, self.report):
            self._enqueue(job)

    def _plan_evaluations(self, example: Example, cot: Slot, cot_text: str) -> None:
        job = plan_evaluations(
            self.store, self.planner, example, cot, cot_text, self.report, initial=False
        )
        if job is not None:
            self._enqueue(job)
        if self._progress is not None and self._progress.total != self.report.slots_total:
            self._progress.total = self.report.slots_total
            self._progress.refresh()

    # ----- running --------------------------------------------------------------------------
    async def run(self) -> RunReport:
        started = time.monotonic()
        self.report.run_id = self.store.register_run(
            "generate", self.planner.config(), [example.id for example in self.examples]
        )
        for example in self.examples:
            self._plan_example(example)
        workers_wanted = self.options.concurrency
        if self.backend.max_concurrency:
            workers_wanted = min(workers_wanted, self.backend.max_concurrency)
        self._progress = _make_progress(self.report, self.options.progress)
        workers = [asyncio.create_task(self._worker()) for _ in range(max(1, workers_wanted))]
        try:
            await self._queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if self._progress is not None:
                self._progress.close()
            self.report.elapsed = time.monotonic() - started
        if self._fatal is not None:
            raise self._fatal
        return self.report

    async def _worker(self) -> None:
        while True:
            _, _, job = await self._queue.get()
            try:
                if self._stopping:
                    self.report.slots_left += len(job.slots)
                else:
                    await self._process(job)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug, or a store failure: stop, then re-raise
                if self._fatal is None:
                    self._fatal = error
                self._stopping = True
            finally:
                self._queue.task_done()

    def _stop(self, reason: str) -> None:
        if not self._stopping:
            log.warning("stopping: %s", reason)
        self._stopping = True
        self.report.stopped = self.report.stopped or reason

    async def _process(self, job: Job) -> None:
        if len(job.slots) > 1 and self.supports_n is False:
            # Queued before we learnt that the endpoint ignores n: split into single samples.
            for slot in job.slots:
                self._planned.discard(slot.key)
            self._enqueue(job)
            return
        n = len(job.slots)
        params = job.params
        prompt_estimate = self.estimator.prompt_tokens(job.messages)
        worst_tokens = prompt_estimate + n * params.max_tokens
        worst_cost = self.options.prices.cost(prompt_estimate, n * params.max_tokens)
        if not await self.budget.reserve(worst_cost):
            self._stop(
                f"--max-cost ${self.budget.max_cost:g} reached (spent ${self.budget.spent:.4f}; "
                f"the next call could cost up to ${worst_cost:.4f})"
            )
            self.report.slots_left += n
            return
        actual_cost = 0.0
        try:
            if self._stopping:  # stopped (fatal error) while this job waited for budget
                self.report.slots_left += n
                return
            answer = await self._call_with_retries(job, worst_tokens)
            if answer is None:
                self.report.slots_left += n
                return
            actual_cost = self._commit(job, *answer, prompt_estimate)
        finally:
            await self.budget.settle(worst_cost, actual_cost)

    async def _call_with_retries(
        self, job: Job, worst_tokens: int
    ) -> tuple[Completion, float] | None:
        """The completion and its latency, or None when the request was given up."""
        request = job.request()
        retry = self.options.retry
        attempt = 0
        while True:
            await self.limiter.acquire(worst_tokens)
            self.report.attempts += 1
            started = time.monotonic()
            try:
                completion = await self.backend.generate(request)
            except TransientTeacherError as error:
                latency = time.monotonic() - started
                too_long = (
                    error.retry_after is not None and error.retry_after > retry.max_retry_after
                )
                give_up = attempt >= retry.max_retries or too_long
                self._record_failure(job, "failed" if give_up else "retry", error, latency)
                if give_up:
                    self.report.failed_requests += 1
                    log.warning("giving up on a request after %d attempts: %s", attempt + 1, error)
                    return None
                self.report.retries += 1
                delay = retry.delay(attempt, error.retry_after)
                attempt += 1
                log.debug("retry %d in %.2fs after: %s", attempt, delay, error)
                await asyncio.sleep(delay)
                if self._stopping:  # a fatal error elsewhere: no point in trying again
                    return None
                continue
            except RequestRejected as error:
                self._record_failure(job, "failed", error, time.monotonic() - started)
                self.report.failed_requests += 1
                self._rejected_in_a_row += 1
                log.warning("request rejected: %s", error)
                if self._rejected_in_a_row >= self.options.max_rejected_in_a_row:
                    self._fatal = self._fatal or TeacherFatalError(
                        f"{self._rejected_in_a_row} requests in a row were rejected; the "
                        f"settings look wrong for this endpoint. Last error: {error}"
                    )
                    self._stop("too many rejected requests")
                return None
            except TeacherFatalError as error:
                self._record_failure(job, "fatal", error, time.monotonic() - started)
                self._fatal = self._fatal or error
                self._stop(str(error))
                return None
            self._rejected_in_a_row = 0
            return completion, time.monotonic() - started

    def _record_failure(self, job: Job, outcome: str, error: Exception, latency: float) -> None:
        self.store.record_call(
            self.report.run_id,
            CallRecord(
                kind=job.kind,
                outcome=outcome,
                model=self.backend.model_id,
                samples_requested=len(job.slots),
                status=getattr(error, "status", None),
                error=str(error),
                latency=latency,
            ),
        )

    def _commit(
        self, job: Job, completion: Completion, latency: float, prompt_estimate: int
    ) -> float:
        n = len(job.slots)
        texts = completion.texts[:n]
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        if prompt_tokens == 0 and completion_tokens == 0 and texts:
            # Some servers omit usage; count an estimate rather than nothing, so the budget
            # still holds.
            self.report.usage_estimated = True
            prompt_tokens = prompt_estimate
            completion_tokens = sum(
                math.ceil(len(text) * self.estimator.ratio) + 1 for text in texts
            )
        cost = self.options.prices.cost(prompt_tokens, completion_tokens)
        reasons = list(completion.finish_reasons) + [None] * len(texts)
        results = [
            Result(
                key=slot.key,
                kind=job.kind,
                example_id=job.example.id,
                sample_index=slot.index,
                model=self.backend.model_id,
                text=text,
                parent=job.parent,
                finish_reason=reason,
            )
            for slot, text, reason in zip(job.slots, texts, reasons, strict=False)
        ]
        # Commit first; everything below only counts what is now safely stored.
        self.store.record_call(
            self.report.run_id,
            CallRecord(
                kind=job.kind,
                outcome="ok",
                model=self.backend.model_id,
                samples_requested=n,
                samples_returned=len(results),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
                latency=latency,
            ),
            results,
        )
        report = self.report
        report.calls += 1
        report.samples += len(results)
        report.prompt_tokens += prompt_tokens
        report.completion_tokens += completion_tokens
        report.cost += cost
        if job.kind == "self_eval":
            report.evals_unparsed += sum(verdict_missing(text) for text in texts)
        if not report.usage_estimated and self.estimator.observe(job.messages, prompt_tokens):
            self.store.set_meta(
                f"tokens_per_char:{self.backend.model_id}", repr(self.estimator.observed)
            )
        if self._progress is not None:
            self._progress.set_postfix_str(
                f"calls={report.calls} "
                f"tok={_human(report.prompt_tokens + report.completion_tokens)} "
                f"${report.cost:.4f}",
                refresh=False,
            )
            self._progress.update(len(results))
        self._learn_n(n, len(texts))
        if len(texts) < n:
            # The endpoint returned fewer samples than asked (it ignores n): ask again for
            # the rest, one request per sample from now on.
            rest = job.slots[len(texts) :]
            for slot in rest:
                self._planned.discard(slot.key)
            self._enqueue(dataclasses.replace(job, slots=rest))
        if job.kind == "cot":
            for slot, text in zip(job.slots, texts, strict=False):
                self._plan_evaluations(job.example, slot, text)
        return cost

    def _learn_n(self, requested: int, returned: int) -> None:
        if requested < 2 or self.supports_n is not None:
            return
        self.supports_n = returned >= requested
        self.store.set_meta(n_support_key(self.backend), "1" if self.supports_n else "0")
        if not self.supports_n:
            log.info(
                "%s returned %d sample(s) for n=%d: it ignores n; sending one request per sample",
                self.backend.describe(),
                returned,
                requested,
            )


def _human(count: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(count) < 1000:
            return f"{count:.0f}{unit}" if unit == "" else f"{count:.1f}{unit}"
        count /= 1000
    return f"{count:.1f}T"


def _make_progress(report: RunReport, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=report.slots_total,
        initial=report.slots_done_before,
        unit="sample",
        desc="teacher",
        dynamic_ncols=True,
        smoothing=0.1,
    )
