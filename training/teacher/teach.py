"""``teach(config) -> report``: the teacher stage as one library call.

    config ─► task and examples ─► backend (can it answer the task?) ─► planner and prices
           ─► store ─► runner (or the Batch API runner) ─► distillation set (``out``)

``mindmirror teach run`` is this function behind argument handling, and the demo's teach
stage calls it too, so a teacher run is wired in one place::

    from mindmirror.training.teacher.teach import TeachConfig, teach

    report = teach(TeachConfig(task="svamp", data="train.jsonl", teacher="local", cots=2, evals=1,
                               out="distill.jsonl"))
    print(report.run.summary())

Every field of :class:`TeachConfig` is a ``mindmirror teach run`` option of the same name (the
CLI's defaults are these), so docs/teacher.md describes both. The store is the only state: a
second call with the same config makes no call that already succeeded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mindmirror.student.distillation import load_task_examples
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example, Task, get_task
from mindmirror.training.teacher import DEFAULT_STORE
from mindmirror.training.teacher.backends import TeacherBackend, TeacherOptions, create_backend
from mindmirror.training.teacher.estimate import PlanEstimate, estimate_plan
from mindmirror.training.teacher.limits import Prices, RetryPolicy
from mindmirror.training.teacher.prompts import Planner, SamplingParams
from mindmirror.training.teacher.records import SetWritten, write_run
from mindmirror.training.teacher.runner import RunOptions, RunReport, TeacherRunner
from mindmirror.training.teacher.store import Store
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TeachConfig", "TeachReport", "teach"]

#: where a price comes from when the config gives none (USD per 1M tokens; unset: free)
INPUT_PRICE_ENV = "MINDMIRROR_TEACH_INPUT_PRICE"
OUTPUT_PRICE_ENV = "MINDMIRROR_TEACH_OUTPUT_PRICE"


class TeachConfig(BaseModel):
    """Every option of a teacher run (``mindmirror teach run`` flags map one to one).

    The defaults of the parts it wires (sampling, retries, prices, Batch API) are theirs, read
    from their classes, so a default lives in one place."""

    model_config = ConfigDict(extra="forbid")

    task: str  # a task name (svamp, cqa, anli, arith) or a task spec file
    data: Path
    store: Path = DEFAULT_STORE
    limit: int | None = Field(None, ge=1)  # the first N examples only
    out: Path | None = None  # the distillation JSONL, written when the run is complete
    # --- teacher ---
    teacher: str | None = None  # None: openai when base_url is given, else local
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = TeacherOptions.api_key_env
    n_mode: Literal["auto", "on", "off"] = "auto"
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    device: str = TeacherOptions.device
    threads: int | None = None
    teacher_options: dict[str, str] = Field(default_factory=dict)
    # --- generation (Mind's Mirror: N = M = 5) ---
    cots: int = Field(5, ge=1)
    evals: int = 5
    temperature: float = SamplingParams.temperature
    top_p: float = SamplingParams.top_p
    max_tokens: int = SamplingParams.max_tokens
    eval_temperature: float | None = None  # None: temperature
    eval_max_tokens: int | None = None  # None: max_tokens
    seed: int | None = None
    shots: int | None = Field(None, ge=0)  # None: every exemplar
    evaluate_unparsed: bool = False
    # --- throughput and cost ---
    concurrency: int = Field(RunOptions.concurrency, ge=1)
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = Field(RetryPolicy.max_retries, ge=0)
    backoff: float = RetryPolicy.base
    timeout: float = TeacherOptions.timeout
    input_price: float | None = None  # None: $MINDMIRROR_TEACH_INPUT_PRICE, else free
    output_price: float | None = None  # None: $MINDMIRROR_TEACH_OUTPUT_PRICE, else free
    batch_discount: float = Prices.batch_discount
    max_cost: float | None = None
    dry_run: bool = False
    progress: bool = True  # a progress bar, when stderr is a terminal
    # --- OpenAI Batch API ---
    batch: bool = False
    # None: the Batch API runner's defaults (30 s, 3 rounds), read there, where the openai
    # client is imported, so a run without --batch never imports it
    poll_interval: float | None = None
    batch_rounds: int | None = Field(None, ge=1)

    @property
    def teacher_name(self) -> str:
        return self.teacher or ("openai" if self.base_url else "local")

    def cot_params(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.max_tokens, self.seed)

    def eval_params(self) -> SamplingParams:
        return SamplingParams(
            self.temperature if self.eval_temperature is None else self.eval_temperature,
            self.top_p,
            self.max_tokens if self.eval_max_tokens is None else self.eval_max_tokens,
            self.seed,
        )

    def prices(self) -> Prices:
        return Prices(
            _price(self.input_price, INPUT_PRICE_ENV),
            _price(self.output_price, OUTPUT_PRICE_ENV),
            self.batch_discount,
        )


@dataclass
class TeachReport:
    """What a :func:`teach` call did. ``run`` is None for a dry run, ``estimate`` is None
    otherwise; ``written`` is the distillation set when ``out`` was given and the run is
    complete."""

    teacher: str  # the backend's description, e.g. "openai teacher gpt-4o-mini"
    model_id: str  # the teacher identity in every store key
    prices: Prices  # what the costs were counted at
    run: RunReport | None = None
    estimate: PlanEstimate | None = None
    written: SetWritten | None = None

    @property
    def complete(self) -> bool:
        return self.run is not None and self.run.complete


def teach(config: TeachConfig) -> TeachReport:
    """Make the teacher calls the store does not hold yet, then export the distillation set.

    Bad settings (an unknown teacher or task, a teacher that cannot answer the task, a budget
    without prices) raise :class:`MindmirrorError` before the store is touched. A run that
    stops early (budget, failed requests) is not an error: ``report.complete`` is False and
    a second call continues it. Progress goes to stderr."""
    task = get_task(config.task)
    examples = _examples(task, config)
    backend = create_backend(config.teacher_name, _teacher_options(config))
    # The one check that this teacher can answer this task: before anything is planned or
    # sent, so a dry run refuses what a real run would.
    backend.check_task(task)
    if config.batch and not backend.supports_batch:
        raise MindmirrorError(
            f"--batch needs an OpenAI-compatible teacher (--teacher openai), not "
            f"{config.teacher_name}"
        )
    planner = Planner(
        task,
        backend.model_id,
        config.cots,
        config.evals,
        config.cot_params(),
        config.eval_params(),
        shots=config.shots,
        evaluate_unparsed=config.evaluate_unparsed,
    )
    prices = config.prices()
    if config.max_cost is not None and prices.free:
        raise MindmirrorError(
            "--max-cost needs prices: pass --input-price and --output-price (USD per 1M tokens)"
        )
    report = TeachReport(backend.describe(), backend.model_id, prices)
    if config.dry_run:
        report.estimate = _estimate(config, planner, examples, prices)
        asyncio.run(backend.aclose())
        return report
    options = RunOptions(
        concurrency=config.concurrency,
        rpm=config.rpm,
        tpm=config.tpm,
        retry=RetryPolicy(max_retries=config.max_retries, base=config.backoff),
        prices=prices,
        max_cost=config.max_cost,
        progress=config.progress and sys.stderr.isatty(),
    )
    with Store(config.store) as store:
        store.bind_task(task.name)
        # A spec file is remembered by absolute path, so export works from any directory.
        spec = Path(config.task)
        store.set_meta("task_source", str(spec.resolve()) if spec.is_file() else config.task)
        store.add_examples(examples)
        print(f"teacher: {report.teacher}", file=sys.stderr)
        report.run = asyncio.run(_drive(store, backend, planner, examples, options, config))
        if config.out is not None and report.run.complete:
            report.written = write_run(store, config.out, report.run.run_id, task)
    return report


def _price(value: float | None, env: str) -> float:
    if value is not None:
        return value
    text = os.environ.get(env)
    if text is None:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise MindmirrorError(f"{env}={text!r} is not a number (USD per 1M tokens)") from None


def _examples(task: Task, config: TeachConfig) -> list[Example]:
    examples = load_task_examples(task, config.data)
    if config.limit:
        examples = examples[: config.limit]
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise MindmirrorError(f"{config.data}: example id {example.id!r} appears twice")
        seen.add(example.id)
    return examples


def _teacher_options(config: TeachConfig) -> TeacherOptions:
    return TeacherOptions(
        model=config.model,
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        timeout=config.timeout,
        n_mode=config.n_mode,
        max_tokens_param=config.max_tokens_param,
        device=config.device,
        threads=config.threads,
        dry_run=config.dry_run,
        extra=dict(config.teacher_options),
    )


def _estimate(
    config: TeachConfig, planner: Planner, examples: list[Example], prices: Prices
) -> PlanEstimate:
    # Reads the store if there is one, writes nothing, creates no file.
    with tempfile.TemporaryDirectory() as scratch:
        path = config.store if config.store.is_file() else Path(scratch) / "empty.sqlite"
        with Store(path) as store:
            return estimate_plan(store, planner, examples, prices, batch=config.batch)


async def _drive(
    store: Store,
    backend: TeacherBackend,
    planner: Planner,
    examples: list[Example],
    options: RunOptions,
    config: TeachConfig,
) -> RunReport:
    try:
        runner: Any
        if config.batch:
            # Imported only here: the Batch API runner needs the openai client.
            from mindmirror.training.teacher.batch import BatchOptions, BatchRunner

            given = {"poll_interval": config.poll_interval, "max_rounds": config.batch_rounds}
            batch_options = BatchOptions(**{k: v for k, v in given.items() if v is not None})
            runner = BatchRunner(store, backend, planner, examples, options, batch_options)
        else:
            runner = TeacherRunner(store, backend, planner, examples, options)
        try:
            report: RunReport = await runner.run()
            return report
        except MindmirrorError:
            # What was done before the fatal error is stored; say how much.
            print(runner.report.summary(), file=sys.stderr)
            raise
    finally:
        await backend.aclose()
