"""OpenAI Batch API mode (``mindmirror teach run --batch``): half the price, up to 24 hours.

A round writes one JSONL of requests for every missing slot whose prerequisites exist (CoTs
first; self-evaluations once their CoT is stored), uploads it, records the input file in the
store, creates the batch and records its id at once. It then polls until the batch ends and
joins the output lines to slots by ``custom_id`` (the store key of the request's first slot),
committing all of them and the batch's "processed" mark in one transaction. Lines that
failed, and slots the output does not mention, are simply still missing: the next round
re-queues exactly those.

A restart first finishes any batch the store knows as open: one recorded with an id is
polled, not resubmitted; one whose input file was uploaded but whose creation was not recorded
(a crash in between) is looked up among the account's batches by its input file, and created
from the already uploaded file only if it is not there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example
from mindmirror.training.teacher.backends.base import TeacherFatalError
from mindmirror.training.teacher.backends.openai_backend import OpenAITeacher, completion_from_body
from mindmirror.training.teacher.limits import TokenEstimator
from mindmirror.training.teacher.prompts import Planner, Slot
from mindmirror.training.teacher.runner import (
    Job,
    RunOptions,
    RunReport,
    n_support_key,
    plan_example,
    verdict_missing,
)
from mindmirror.training.teacher.store import BatchRecord, CallRecord, Result, Store

__all__ = ["BatchOptions", "BatchRunner"]

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class BatchOptions:
    poll_interval: float = 30.0
    #: submissions per invocation; a request that keeps failing is not retried forever
    max_rounds: int = 3
    completion_window: str = "24h"
    #: most requests per batch file (OpenAI allows 50,000)
    max_requests: int = 50_000


class BatchRunner:
    def __init__(
        self,
        store: Store,
        backend: OpenAITeacher,
        planner: Planner,
        examples: Sequence[Example],
        options: RunOptions | None = None,
        batch_options: BatchOptions | None = None,
    ) -> None:
        if not backend.supports_batch:
            raise MindmirrorError(f"--batch needs an OpenAI-compatible teacher, not {backend.name}")
        self.store = store
        self.backend = backend
        self.client = backend.client
        self.planner = planner
        self.examples = {example.id: example for example in examples}
        self.order = [example.id for example in examples]
        self.options = options or RunOptions()
        self.batch_options = batch_options or BatchOptions()
        self.prices = self.options.prices
        self.estimator = TokenEstimator(store.usage_stats(backend.model_id)[0])
        self.supports_n = backend.supports_n
        if self.supports_n is None:
            known = store.get_meta(n_support_key(backend))
            # The Batch API honours n; another server's batch endpoint may not (learnt below).
            self.supports_n = True if known is None else known == "1"
        self.report = RunReport(run_id="")
        self._budget_hit = False

    async def run(self) -> RunReport:
        started = time.monotonic()
        self.report.run_id = self.store.register_run("generate", self.planner.config(), self.order)
        first = True
        rounds = 0
        try:
            while True:
                for record in self.store.batches(self.report.run_id, open_only=True):
                    await self._finish(record)
                jobs = self._missing_jobs(count_stored=first)
                first = False
                if not jobs:
                    break
                if self._budget_hit or rounds >= self.batch_options.max_rounds:
                    self.report.slots_left = sum(len(job.slots) for job in jobs)
                    if not self._budget_hit:
                        self.report.stopped = (
                            f"{self.batch_options.max_rounds} batch rounds made; requests that "
                            "keep failing are left for the next invocation"
                        )
                    break
                chosen = self._within_budget(jobs)
                if not chosen:
                    self.report.slots_left = sum(len(job.slots) for job in jobs)
                    break
                await self._submit(chosen)
                rounds += 1
        except openai.APIError as error:
            raise TeacherFatalError(
                f"a Batch API request failed ({error}); what was submitted is recorded in the "
                "store, rerun the command to resume"
            ) from None
        finally:
            self.report.elapsed = time.monotonic() - started
        return self.report

    # ----- planning ----------------------------------------------------------------------------
    def _missing_jobs(self, count_stored: bool) -> list[Job]:
        """Every request the store still lacks and can be made now (self-evaluations only for
        CoTs already stored). Report counters are filled on the first pass only."""
        scratch = RunReport(run_id=self.report.run_id)
        jobs: list[Job] = []
        for example_id in self.order:
            jobs += plan_example(self.store, self.planner, self.examples[example_id], scratch)
        if count_stored:
            self.report.slots_total = scratch.slots_total
            self.report.slots_done_before = scratch.slots_done_before
            self.report.cots_unparsed = scratch.cots_unparsed
            self.report.evals_unparsed = scratch.evals_unparsed
        split: list[Job] = []
        for job in jobs:
            groups = [job.slots] if self.supports_n else [[slot] for slot in job.slots]
            split += [dataclasses.replace(job, slots=group) for group in groups]
        return split[: self.batch_options.max_requests]

    def _worst_cost(self, job: Job) -> float:
        prompt = self.estimator.prompt_tokens(job.messages)
        return self.prices.cost(prompt, len(job.slots) * job.params.max_tokens, batch=True)

    def _within_budget(self, jobs: list[Job]) -> list[Job]:
        """The longest prefix of ``jobs`` whose worst case fits the budget. When that is not all
        of them, this is the last round: the run stops after joining it."""
        if self.options.max_cost is None:
            return jobs
        remaining = self.options.max_cost - self.report.cost
        chosen, total = [], 0.0
        for job in jobs:
            worst = self._worst_cost(job)
            if total + worst > remaining:
                break
            chosen.append(job)
            total += worst
        if len(chosen) < len(jobs):
            self._budget_hit = True
            self.report.stopped = (
                f"--max-cost ${self.options.max_cost:g} reached: submitted {len(chosen)} of "
                f"{len(jobs)} requests (worst case ${total:.4f}, ${self.report.cost:.4f} spent "
                "before)"
            )
            log.warning(self.report.stopped)
        return chosen

    # ----- submitting --------------------------------------------------------------------------
    async def _submit(self, jobs: list[Job]) -> None:
        lines, items = [], []
        for job in jobs:
            custom_id = job.slots[0].key
            request = job.request()
            lines.append(
                json.dumps(
                    {
                        "custom_id": custom_id,
                        "method": "POST",
                        "url": ENDPOINT,
                        "body": self.backend.request_body(request),
                    },
                    ensure_ascii=False,
                )
            )
            items.append(
                (
                    custom_id,
                    {
                        "kind": job.kind,
                        "example_id": job.example.id,
                        "parent": job.parent,
                        "slots": [[slot.key, slot.index] for slot in job.slots],
                        "max_tokens": job.params.max_tokens,
                    },
                )
            )
        data = ("\n".join(lines) + "\n").encode("utf-8")
        uploaded = await self.client.files.create(
            file=("mindmirror-teach.jsonl", data, "application/jsonl"), purpose="batch"
        )
        # Recorded before the batch exists: a crash from here on is recovered by input file.
        self.store.add_batch_upload(uploaded.id, self.report.run_id, items)
        await self._create(uploaded.id)
        log.info("submitted a batch of %d requests (input file %s)", len(items), uploaded.id)

    async def _create(self, input_file_id: str) -> str:
        batch = await self.client.batches.create(
            input_file_id=input_file_id,
            endpoint=ENDPOINT,
            completion_window=self.batch_options.completion_window,  # type: ignore[arg-type]
            metadata={"mindmirror_run": self.report.run_id},
        )
        self.store.update_batch(input_file_id, batch_id=batch.id, status=batch.status)
        return batch.id

    async def _find_batch(self, input_file_id: str) -> str | None:
        async for batch in self.client.batches.list(limit=100):
            if batch.input_file_id == input_file_id:
                return batch.id
        return None

    # ----- collecting --------------------------------------------------------------------------
    async def _finish(self, record: BatchRecord) -> None:
        batch_id = record.batch_id
        if batch_id is None:
            batch_id = await self._find_batch(record.input_file_id)
            if batch_id is None:
                log.info("creating the batch for uploaded file %s", record.input_file_id)
                batch_id = await self._create(record.input_file_id)
            else:
                log.info("found batch %s created before the restart", batch_id)
                self.store.update_batch(record.input_file_id, batch_id=batch_id)
        batch = await self._poll(record.input_file_id, batch_id)
        items = self.store.batch_items(record.input_file_id)
        entries: list[tuple[CallRecord, list[Result]]] = []
        seen: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if line.strip():
                    entry = self._join_line(json.loads(line), items, batch_id, seen)
                    if entry is not None:
                        entries.append(entry)
        missing = len(items) - len(seen)
        if missing:
            log.warning(
                "batch %s (%s) has no result for %d requests", batch_id, batch.status, missing
            )
        self.store.record_batch_output(record.input_file_id, self.report.run_id, entries)
        for call, results in entries:
            self._count(call, results)
        if batch.status == "failed" and not entries:
            errors = getattr(batch, "errors", None)
            details = "; ".join(
                str(getattr(error, "message", error))
                for error in (getattr(errors, "data", None) or [])
            )
            raise TeacherFatalError(f"batch {batch_id} failed: {details or 'no details given'}")

    async def _poll(self, input_file_id: str, batch_id: str) -> Any:
        progress = None
        if self.options.progress:
            from tqdm import tqdm

            progress = tqdm(desc=f"batch {batch_id}", unit="request", dynamic_ncols=True)
        try:
            while True:
                batch = await self.client.batches.retrieve(batch_id)
                self.store.update_batch(input_file_id, status=batch.status)
                counts = getattr(batch, "request_counts", None)
                if progress is not None and counts is not None:
                    progress.total = counts.total
                    progress.n = counts.completed + counts.failed
                    progress.set_postfix_str(batch.status, refresh=True)
                if batch.status in TERMINAL:
                    return batch
                await asyncio.sleep(self.batch_options.poll_interval)
        finally:
            if progress is not None:
                progress.close()

    def _join_line(
        self,
        line: dict[str, Any],
        items: dict[str, dict[str, Any]],
        batch_id: str,
        seen: set[str],
    ) -> tuple[CallRecord, list[Result]] | None:
        custom_id = line.get("custom_id")
        item = items.get(str(custom_id))
        if item is None or custom_id in seen:
            log.warning(
                "batch %s: ignoring an output line for unknown custom_id %r", batch_id, custom_id
            )
            return None
        seen.add(str(custom_id))
        slots = [Slot(key, index) for key, index in item["slots"]]
        response = line.get("response") or {}
        status = response.get("status_code")
        if status != 200:
            error = line.get("error") or (response.get("body") or {}).get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            call = CallRecord(
                kind=item["kind"],
                outcome="failed",
                model=self.backend.model_id,
                samples_requested=len(slots),
                status=status,
                error=f"batch: {message or 'no result'}",
                source="batch",
                batch_id=batch_id,
            )
            return call, []
        completion = completion_from_body(response.get("body") or {})
        texts = completion.texts[: len(slots)]
        if len(slots) > 1 and len(texts) < len(slots) and self.supports_n:
            # This endpoint's batches ignore n: one request per sample from the next round.
            self.supports_n = False
            self.store.set_meta(n_support_key(self.backend), "0")
        reasons = list(completion.finish_reasons) + [None] * len(texts)
        results = [
            Result(
                key=slot.key,
                kind=item["kind"],
                example_id=item["example_id"],
                sample_index=slot.index,
                model=self.backend.model_id,
                text=text,
                parent=item["parent"],
                finish_reason=reason,
                source="batch",
            )
            for slot, text, reason in zip(slots, texts, reasons, strict=False)
        ]
        call = CallRecord(
            kind=item["kind"],
            outcome="ok",
            model=self.backend.model_id,
            samples_requested=len(slots),
            samples_returned=len(results),
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost=self.prices.cost(
                completion.prompt_tokens, completion.completion_tokens, batch=True
            ),
            source="batch",
            batch_id=batch_id,
        )
        return call, results

    def _count(self, call: CallRecord, results: list[Result]) -> None:
        report = self.report
        report.attempts += 1
        if call.outcome != "ok":
            report.failed_requests += 1
            return
        report.calls += 1
        report.samples += len(results)
        report.prompt_tokens += call.prompt_tokens
        report.completion_tokens += call.completion_tokens
        report.cost += call.cost
        for result in results:
            if result.kind == "self_eval":
                report.evals_unparsed += verdict_missing(result.text)
            elif (
                self.planner.task.split_cot(result.text, self.examples.get(result.example_id))[1]
                is None
            ):
                report.cots_unparsed += 1
