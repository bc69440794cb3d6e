"""The served demo: the real service as a subprocess, its readiness, and the sample requests.

The service runs as ``python -m mindmirror.service`` (uvicorn), configured through its
``MINDMIRROR_*`` variables as docs/contracts.md says, exactly as it would be deployed; the demo
talks to it over HTTP only. Each sample request is kept with a ``curl`` line that repeats it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mindmirror.demo.settings import STARTED_ENV, TASK, DemoPaths
from mindmirror.student.errors import MindmirrorError

__all__ = [
    "curl_line",
    "free_port",
    "sample_requests",
    "service_available",
    "sigterm_as_interrupt",
    "start_service",
    "stop_service",
    "wait_ready",
]


def service_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mindmirror.service.__main__") is not None


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise MindmirrorError(f"cannot find a free port on {host}")


def start_service(bundle: Path, host: str, port: int, threads: int | None) -> subprocess.Popen:
    """``python -m mindmirror.service`` (uvicorn) on the bundle, configured as
    docs/contracts.md says."""
    env = {
        **{name: value for name, value in os.environ.items() if name != STARTED_ENV},
        "MINDMIRROR_BUNDLE": str(bundle),
        "MINDMIRROR_HOST": host,
        "MINDMIRROR_PORT": str(port),
        "MINDMIRROR_DEVICE": "cpu",
        "MINDMIRROR_LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
    }
    if threads:
        env["MINDMIRROR_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "mindmirror.service"], env=env)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until ``/readyz`` answered 200; an error if the service died or took too long."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise MindmirrorError(
                f"the service exited with status {process.returncode} before it was ready "
                "(its error is printed above)"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise MindmirrorError(f"the service at {url} was not ready after {timeout:.0f} s")


def stop_service(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # the service drains, then exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a closing terminal, a process manager) stops the demo as Ctrl-C does,
    so the service it started is drained and stopped instead of left running on its own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def curl_line(url: str, path: str, body: dict[str, Any]) -> str:
    payload = json.dumps(body, ensure_ascii=False)
    return f"curl -s {url}{path} -H 'Content-Type: application/json' -d {shlex.quote(payload)}"


def sample_requests(url: str, paths: DemoPaths, seed: int) -> list[dict[str, Any]]:
    """One predict, one explain and one evaluate request on test questions; the evaluate
    request judges a wrong chain of thought, to show the student catching it."""
    import httpx

    from mindmirror.student.distillation import load_task_examples
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulate_cot

    task = get_task(TASK)
    examples = load_task_examples(task, paths.split("test"))
    two_step = [e for e in examples if "(" in (e.label or "")] or examples
    predict_example, explain_example = examples[0], two_step[0]
    judged = examples[1]
    wrong = simulate_cot(judged, 0, SimulatedTeacherConfig(error_rate=1.0, seed=seed))
    calls = [
        ("/v1/predict", {"input": predict_example.question}, predict_example, None),
        ("/v1/explain", {"input": explain_example.question}, explain_example, None),
        (
            "/v1/evaluate",
            {"question": judged.question, "reasoning": wrong.text},
            judged,
            f"this reasoning is wrong ({(wrong.error or '').replace('_', ' ')}); "
            f"the right equation is {judged.label}",
        ),
    ]
    exchanges = []
    with httpx.Client(timeout=120.0) as client:
        for path, body, example, note in calls:
            response = client.post(f"{url}{path}", json=body)
            if response.status_code != 200:
                raise MindmirrorError(
                    f"{path} answered {response.status_code}: {response.text[:300]}"
                )
            value = task.answer_value(example.label) if example.label else None
            exchanges.append(
                {
                    "path": path,
                    "curl": curl_line(url, path, body),
                    "response": response.json(),
                    "gold": f"{example.label} = {value:g}" if value is not None else None,
                    "note": note,
                }
            )
    return exchanges
