"""Teacher throughput: our async runner vs sequential calls, and the local teacher's speed.

1. Calls per second against a local OpenAI-compatible server with 200 ms simulated latency
   (the scripted fake from the tests, on 127.0.0.1): a plain sequential loop over the official
   client (what a glue script does) versus ``TeacherRunner`` with bounded concurrency, through
   the whole store path (plan, commit every answer to SQLite with fsync). One sample per
   call (``--n-mode off``) so both count the same unit. Printed as a ratio from one run.
2. Tokens per second of the local default teacher (SmolLM2-135M-Instruct GGUF) on this
   machine, with torch's default threads and with one thread.

    .venv/bin/python bench/teach_throughput.py --quick

Numbers depend on the machine's load; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mindmirror.student.tasks import Example, get_task
from mindmirror.training.teacher.backends.openai_backend import OpenAITeacher
from mindmirror.training.teacher.prompts import Planner, SamplingParams, cot_messages
from mindmirror.training.teacher.runner import RunOptions, TeacherRunner
from mindmirror.training.teacher.store import Store

from tests.fake_openai import FakeOpenAI, serve

SVAMP = get_task("svamp")


def _examples(count: int) -> list[Example]:
    return [
        Example(f"b{i}", f"Tom has {i} apples and buys {i + 3} more.\nHow many apples?")
        for i in range(count)
    ]


def sequential_calls(url: str, calls: int) -> float:
    """calls/s of a plain loop with the official (sync) client, one request at a time."""
    from openai import OpenAI

    client = OpenAI(api_key="bench", base_url=url, max_retries=0)
    examples = _examples(calls)
    started = time.perf_counter()
    for example in examples:
        client.chat.completions.create(
            model="bench-teacher",
            messages=cot_messages(SVAMP, example),  # type: ignore[arg-type]
            temperature=0.7,
            max_tokens=64,
        )
    elapsed = time.perf_counter() - started
    client.close()
    return calls / elapsed


def runner_calls(url: str, calls: int, concurrency: int, workdir: Path) -> tuple[float, int]:
    """calls/s of TeacherRunner (one sample per call), and the calls it made."""
    cots = 5
    examples = _examples(calls // cots)

    async def go() -> tuple[float, int]:
        backend = OpenAITeacher("bench-teacher", "bench", base_url=url, n_mode="off")
        params = SamplingParams(temperature=0.7, max_tokens=64)
        planner = Planner(SVAMP, backend.model_id, cots, 0, params, params)
        try:
            with Store(workdir / f"bench-{concurrency}.sqlite") as store:
                store.bind_task(SVAMP.name)
                store.add_examples(examples)
                runner = TeacherRunner(
                    store,
                    backend,
                    planner,
                    examples,
                    RunOptions(concurrency=concurrency, progress=False),
                )
                started = time.perf_counter()
                report = await runner.run()
                elapsed = time.perf_counter() - started
                return report.calls / elapsed, report.calls
        finally:
            await backend.aclose()

    return asyncio.run(go())


def local_tokens_per_second(tokens: int, threads: int | None) -> tuple[float, float]:
    """(load seconds, generated tokens/s) of the default local teacher."""
    from mindmirror.training.teacher.backends.base import GenerationRequest
    from mindmirror.training.teacher.backends.local import LocalTeacher

    teacher = LocalTeacher(threads=threads)
    started = time.perf_counter()
    teacher.load()
    load = time.perf_counter() - started
    messages = cot_messages(SVAMP, _examples(1)[0], shots=1)
    request = GenerationRequest(messages, SamplingParams(temperature=0.7, max_tokens=tokens))
    asyncio.run(teacher.generate(GenerationRequest(messages, SamplingParams(max_tokens=4))))
    started = time.perf_counter()
    completion = asyncio.run(teacher.generate(request))
    elapsed = time.perf_counter() - started
    return load, completion.completion_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run to check it works")
    parser.add_argument("--latency", type=float, default=0.2, help="simulated seconds per call")
    parser.add_argument("--concurrency", type=int, help="runner concurrency")
    parser.add_argument("--skip-local", action="store_true", help="skip the SmolLM2 figure")
    args = parser.parse_args()
    sequential_n = 10 if args.quick else 30
    runner_n = 100 if args.quick else 1000
    concurrency = args.concurrency or (16 if args.quick else 64)
    local_tokens = 32 if args.quick else 128

    fake = FakeOpenAI(latency=args.latency)
    with serve(fake) as url, tempfile.TemporaryDirectory() as tmp:
        sequential = sequential_calls(url, sequential_n)
        ours, made = runner_calls(url, runner_n, concurrency, Path(tmp))
    bound = concurrency / args.latency
    print(f"simulated latency {args.latency * 1000:.0f} ms per call")
    print(f"sequential client loop: {sequential:7.1f} calls/s ({sequential_n} calls)")
    print(
        f"TeacherRunner x{concurrency}:  {ours:7.1f} calls/s ({made} calls, every answer "
        f"committed to SQLite; ideal {bound:.0f} calls/s)"
    )
    print(f"ratio: {ours / sequential:.1f}x")
    if not args.skip_local:
        for threads in (None, 1):
            load, speed = local_tokens_per_second(local_tokens, threads)
            label = "default threads" if threads is None else f"{threads} thread"
            print(
                f"local SmolLM2-135M-Instruct ({label}): {speed:.1f} tokens/s generating "
                f"{local_tokens} tokens; load {load:.1f}s"
            )


if __name__ == "__main__":
    main()
