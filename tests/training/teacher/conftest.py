from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mindmirror.student.distillation import load_task_examples
from mindmirror.student.tasks import Example, get_task
from mindmirror.training.teacher.backends.openai_backend import OpenAITeacher
from mindmirror.training.teacher.limits import Prices, RetryPolicy
from mindmirror.training.teacher.prompts import Planner, SamplingParams
from mindmirror.training.teacher.runner import RunOptions, RunReport, TeacherRunner
from mindmirror.training.teacher.store import Store

from tests.fake_openai import FakeOpenAI, serve

SVAMP = get_task("svamp")
MODEL = "fake-teacher"

QUESTIONS = [
    ("Tom has 3 apples and buys 4 more.\nHow many apples does he have?", "3 + 4"),
    ("Ana had 10 books and gave 2 away.\nHow many books are left?", "10 - 2"),
    ("A box holds 6 rows of 7 cans.\nHow many cans are in the box?", "6 * 7"),
    ("MALFORMED: Li saw 5 birds and then 6 more.\nHow many birds?", "5 + 6"),
    ("Sam ran 12 laps on Monday and 9 on Tuesday.\nHow many laps in all?", "12 + 9"),
    ("Eva baked 30 cookies and ate 4.\nHow many are left?", "30 - 4"),
]


def write_data(path: Path, count: int) -> Path:
    """SVAMP-shaped task data; example 3 (and every 6th after it) draws malformed answers."""
    with path.open("w") as handle:
        for i in range(count):
            question, label = QUESTIONS[i % len(QUESTIONS)]
            if i >= len(QUESTIONS):
                question = question.replace("\n", f" (copy {i})\n")
            handle.write(json.dumps({"id": f"q{i}", "input": question, "label": label}) + "\n")
    return path


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write_data(tmp_path / "data.jsonl", 4)


def examples_of(path: Path) -> list[Example]:
    return load_task_examples(SVAMP, path)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., tuple[FakeOpenAI, str]]]:
    """Start scripted fake servers on demand; all are stopped at the end of the test."""
    stack: list[Any] = []

    def start(**kwargs: Any) -> tuple[FakeOpenAI, str]:
        fake = FakeOpenAI(**kwargs)
        context = serve(fake)
        url = context.__enter__()
        stack.append(context)
        return fake, url

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def make_planner(
    cots: int = 3, evals: int = 2, seed: int | None = 7, max_tokens: int = 64, **kwargs: Any
) -> Planner:
    params = SamplingParams(temperature=0.7, max_tokens=max_tokens, seed=seed)
    return Planner(SVAMP, MODEL, cots, evals, params, params, **kwargs)


def run_teacher(
    store_path: Path,
    url: str,
    examples: list[Example],
    planner: Planner | None = None,
    n_mode: str = "auto",
    timeout: float = 5.0,
    **options: Any,
) -> RunReport:
    """One in-process run through the real openai client."""
    planner = planner or make_planner()
    options.setdefault("progress", False)
    options.setdefault("retry", RetryPolicy(max_retries=3, base=0.01, cap=0.05))
    options.setdefault("prices", Prices(1.0, 2.0))

    async def go() -> RunReport:
        backend = OpenAITeacher(
            model=MODEL, api_key="sk-test", base_url=url, timeout=timeout, n_mode=n_mode
        )
        try:
            with Store(store_path) as store:
                store.bind_task(SVAMP.name)
                store.add_examples(examples)
                return await TeacherRunner(
                    store, backend, planner, examples, RunOptions(**options)
                ).run()
        finally:
            await backend.aclose()

    return asyncio.run(go())


def export_lines(store_path: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    from mindmirror.training.teacher.records import export_run

    with Store(store_path) as store:
        result = export_run(store, run_id, SVAMP)
    return [record.model_dump(mode="json") for record in result.records]
