"""SIGTERM under load: the process stops accepting, finishes every accepted request, exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.conftest import free_port, metric
from tests.tiny_student import make_problems


def test_sigterm_drains_accepted_requests(onnx_bundle: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MINDMIRROR_BUNDLE": str(onnx_bundle),
        "MINDMIRROR_PORT": str(port),
        # One input per batch: the accepted work takes a while to drain.
        "MINDMIRROR_MAX_BATCH_SIZE": "1",
        "MINDMIRROR_MAX_WAIT_MS": "0",
        "MINDMIRROR_DRAIN_TIMEOUT_S": "60",
    }
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "mindmirror.service"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, "server exited during start-up"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)

        questions = [p.question for p in make_problems(16, seed=4)]

        async def load() -> tuple[list[object], float]:
            limits = httpx.Limits(max_connections=len(questions) + 2)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                requests = [
                    asyncio.ensure_future(client.post("/v1/explain", json={"input": q}))
                    for q in questions
                ]
                # SIGTERM once the queue proves requests were accepted and are waiting.
                depth = 0.0
                while depth < 6:
                    text = (await client.get("/metrics")).text
                    depth = metric(text, "mindmirror_queue_depth", endpoint="explain")
                    await asyncio.sleep(0.005)
                process.send_signal(signal.SIGTERM)
                return list(await asyncio.gather(*requests, return_exceptions=True)), depth

        results, depth_at_signal = asyncio.run(load())
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log.seek(0)
    output = log.read()

    answered = [r for r in results if isinstance(r, httpx.Response) and r.status_code == 200]
    for result in results:
        if isinstance(result, httpx.Response):
            # Either served, or refused politely because it arrived after the signal.
            assert result.status_code in (200, 503), result.text
            if result.status_code == 503:
                assert "shutting down" in result.json()["error"]["message"]
        else:
            # Never a request cut off mid-way: only "could not connect" after the socket closed.
            assert isinstance(result, httpx.ConnectError), repr(result)
    # Every request that was queued when the signal came (2 generations each) got its answer.
    assert len(answered) >= depth_at_signal / 2
    assert all(r.json()["rationale"] for r in answered)
    assert "Traceback" not in output
    # Structured logs: JSON objects; each request has one access line with its request id.
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["message"].startswith("draining") for e in events)
    access = [
        e for e in events if e["logger"] == "mindmirror.access" and e["path"] == "/v1/explain"
    ]
    assert len(access) == len(results) - sum(isinstance(r, httpx.ConnectError) for r in results)
    assert all(len(e["request_id"]) == 32 and e["status"] in (200, 503) for e in access)
    with __import__("pytest").raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)
