from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mindmirror.service.backends import Row
from mindmirror.service.runtime import StudentModel
from mindmirror.service.server import DrainingServer, build_server
from mindmirror.service.settings import Settings
from mindmirror.service.state import ServiceState
from mindmirror.student.bundle import load_manifest, write_manifest

from tests.service.exports import add_onnx_export
from tests.tiny_student import make_problems


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with an fp32 ONNX export in the contract layout. Read-only."""
    target = tmp_path_factory.mktemp("served") / "bundle"
    shutil.copytree(tiny_bundle, target)
    return add_onnx_export(target)


@pytest.fixture(scope="session")
def no_self_eval_bundle(onnx_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX bundle claiming it was trained without self-evaluation."""
    target = tmp_path_factory.mktemp("noeval") / "bundle"
    shutil.copytree(onnx_bundle, target)
    manifest = load_manifest(target, verify=False)
    write_manifest(target, manifest.model_copy(update={"self_evaluation": False}))
    return target


@pytest.fixture(scope="session")
def questions() -> list[str]:
    return [problem.question for problem in make_problems(40, seed=11)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatedBackend:
    """Wraps a real backend: calls block while the gate is closed, can be made to raise once,
    and every call's rows are recorded (to prove what did or did not run)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next = threading.Event()
        self.calls: list[list[list[int]]] = []

    name = property(lambda self: self.inner.name)
    variant = property(lambda self: self.inner.variant)
    device = property(lambda self: self.inner.device)

    def setup(self) -> None:
        self.inner.setup()

    def close(self) -> None:
        self.inner.close()

    def __call__(self, rows: Sequence[Row]) -> list[list[int]]:
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise RuntimeError("test gate never opened")
        self.calls.append([list(row.input_ids) for row in rows])
        if self.fail_next.is_set():
            self.fail_next.clear()
            raise RuntimeError("injected backend failure")
        return self.inner(rows)

    def score_first(self, rows: Sequence[Row], tokens: Sequence[int]) -> list[list[float]]:
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise RuntimeError("test gate never opened")
        self.calls.append([list(row.input_ids) for row in rows])
        return self.inner.score_first(rows, tokens)


@dataclass
class RunningServer:
    url: str
    server: DrainingServer
    model: StudentModel
    thread: threading.Thread

    @property
    def state(self) -> ServiceState:
        return self.server.state

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running_server(
    bundle: Path,
    wrap: Callable[[Any], Any] | None = None,
    wait_ready: bool = True,
    **settings: Any,
) -> Iterator[RunningServer]:
    """A real uvicorn server on 127.0.0.1 in a thread, stopped (drained) on exit."""
    port = free_port()
    config = Settings(bundle=bundle, port=port, **settings)
    model = StudentModel.open(config)
    if wrap is not None:
        model.backend = wrap(model.backend)
    server = build_server(config, model)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    running = RunningServer(f"http://127.0.0.1:{port}", server, model, thread)
    try:
        wait_for(lambda: server.started, what="server start")
        if wait_ready:
            wait_for(lambda: running.state.ready, what="model ready")
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "server thread did not stop"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if "{" in key:
            metric_name, raw = key[:-1].split("{", 1)
            parts = sorted(p for p in raw.split(",") if p)
            if metric_name == name and ",".join(parts) == wanted:
                return float(value)
        elif key == name and not labels:
            return float(value)
    return 0.0
