"""Overload, timeouts, failures, readiness and disconnects, with the real ONNX model behind a
gate the test opens and closes (so "the model is busy" is a fact, not a race)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.service.conftest import GatedBackend, metric, running_server, wait_for


def test_not_ready_until_warm_then_full_queue_is_429_and_server_stays_healthy(
    onnx_bundle: Path, questions: list[str]
) -> None:
    gated: list[GatedBackend] = []

    def wrap(backend):
        gated.append(GatedBackend(backend))
        gated[0].gate.clear()  # warm-up blocks until the test opens the gate
        return gated[0]

    with running_server(
        onnx_bundle,
        wrap=wrap,
        wait_ready=False,
        max_batch_size=2,
        max_queue=4,
        max_predict_inputs=4,
        max_samples=1,
    ) as running:
        backend = gated[0]
        with running.client() as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] in ("loading", "warming_up")
            early = client.post("/v1/predict", json={"input": questions[0]})
            assert early.status_code == 503
            assert "not ready" in early.json()["error"]["message"]
            assert early.headers["retry-after"]
            backend.gate.set()
            wait_for(lambda: running.state.ready, what="ready after warm-up")
            assert client.get("/readyz").status_code == 200

        # Hold the model with one running batch, then fill the 4-input queue.
        backend.gate.clear()
        backend.entered.clear()

        async def overload() -> tuple[list[httpx.Response], list[httpx.Response]]:
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
                running_batch = [
                    asyncio.ensure_future(client.post("/v1/predict", json={"input": questions[1]}))
                ]
                await asyncio.to_thread(backend.entered.wait, 30)
                queued = [
                    asyncio.ensure_future(client.post("/v1/predict", json={"input": q}))
                    for q in questions[2:6]
                ]
                await asyncio.to_thread(
                    wait_for, lambda: running.state.batchers["predict"].depth == 4, 30, "queue"
                )
                refused = [
                    await client.post("/v1/predict", json={"input": questions[6]}),
                    await client.post("/v1/predict", json={"inputs": questions[7:9]}),
                ]
                depth = metric(
                    (await client.get("/metrics")).text,
                    "mindmirror_queue_depth",
                    endpoint="predict",
                )
                assert depth == 4
                assert (await client.get("/healthz")).status_code == 200
                backend.gate.set()
                accepted = await asyncio.gather(*running_batch, *queued)
                return list(accepted), refused

        accepted, refused = asyncio.run(overload())
        for response in refused:
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert "queue is full" in response.json()["error"]["message"]
        assert [r.status_code for r in accepted] == [200] * 5
        with running.client() as client:
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/predict", json={"input": questions[9]}).status_code == 200
            text = client.get("/metrics").text
            assert metric(text, "mindmirror_requests_total", endpoint="predict", status="429") == 2
            assert metric(text, "mindmirror_queue_depth", endpoint="predict") == 0


def test_backend_failure_fails_one_batch_only(onnx_bundle: Path, questions: list[str]) -> None:
    gated: list[GatedBackend] = []
    with running_server(
        onnx_bundle, wrap=lambda b: gated.append(GatedBackend(b)) or gated[0]
    ) as running:
        backend = gated[0]
        with running.client() as client:
            backend.fail_next.set()
            failed = client.post("/v1/predict", json={"input": questions[0]})
            assert failed.status_code == 500
            error = failed.json()["error"]
            assert error["type"] == "backend_error"
            assert error["request_id"] == failed.headers["x-request-id"]
            assert "Traceback" not in failed.text
            assert "injected" not in failed.text
            after = client.post("/v1/predict", json={"input": questions[0]})
            assert after.status_code == 200
            assert client.get("/readyz").status_code == 200
            text = client.get("/metrics").text
            assert metric(text, "mindmirror_requests_total", endpoint="predict", status="500") == 1


def test_timeout_is_504_and_drops_the_queued_work(onnx_bundle: Path, questions: list[str]) -> None:
    gated: list[GatedBackend] = []
    with running_server(
        onnx_bundle, wrap=lambda b: gated.append(GatedBackend(b)) or gated[0], request_timeout_s=0.5
    ) as running:
        backend = gated[0]
        backend.gate.clear()
        backend.entered.clear()

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
                first = asyncio.ensure_future(
                    client.post("/v1/predict", json={"input": questions[0]})
                )
                await asyncio.to_thread(backend.entered.wait, 30)
                second = await client.post("/v1/predict", json={"input": questions[1]})
                return await first, second

        started = time.monotonic()
        # The first request's batch holds the gate; both requests time out while it is closed.
        first, second = asyncio.run(scenario())
        assert first.status_code == 504
        assert second.status_code == 504
        assert "MINDMIRROR_REQUEST_TIMEOUT_S" in second.json()["error"]["message"]
        assert time.monotonic() - started < 10
        assert running.state.batchers["predict"].depth == 0
        calls_before = len(backend.calls)
        backend.gate.set()
        with running.client() as client:
            assert client.post("/v1/predict", json={"input": questions[2]}).status_code == 200
        # The timed-out second request never reached the model.
        ran = [ids for call in backend.calls[calls_before:] for ids in call]
        second_ids = running.model.encode_inputs(
            [running.model.manifest.prefixes.cot_input(questions[1], "predict")], ["input"]
        )[0]
        assert second_ids not in ran


def test_client_disconnect_cancels_queued_work(onnx_bundle: Path, questions: list[str]) -> None:
    gated: list[GatedBackend] = []
    with running_server(
        onnx_bundle, wrap=lambda b: gated.append(GatedBackend(b)) or gated[0]
    ) as running:
        backend = gated[0]
        backend.gate.clear()
        backend.entered.clear()
        model = running.model
        victim_ids = model.encode_inputs(
            [model.manifest.prefixes.cot_input(questions[5], "predict")], ["input"]
        )[0]

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
                blocker = asyncio.ensure_future(
                    client.post("/v1/predict", json={"input": questions[4]})
                )
                await asyncio.to_thread(backend.entered.wait, 30)
                # The victim queues behind the running batch, then its client gives up.
                try:
                    await client.post(
                        "/v1/predict",
                        json={"input": questions[5]},
                        timeout=httpx.Timeout(30, read=0.5),
                    )
                except httpx.ReadTimeout:
                    pass
                else:
                    raise AssertionError("the victim request was answered while the model was held")
                await asyncio.to_thread(
                    wait_for, lambda: running.state.batchers["predict"].depth == 0, 10, "withdrawal"
                )
                backend.gate.set()
                return await blocker

        assert asyncio.run(scenario()).status_code == 200
        ran = [ids for call in backend.calls for ids in call]
        assert victim_ids not in ran
        with running.client() as client:
            text = client.get("/metrics").text
            assert metric(text, "mindmirror_requests_total", endpoint="predict", status="499") == 1


def test_draining_turns_readiness_and_new_work_away(onnx_bundle: Path, questions) -> None:
    with running_server(onnx_bundle) as running, running.client() as client:
        assert client.get("/readyz").status_code == 200
        running.state.begin_drain()  # what SIGTERM does first (see test_drain.py)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"
        refused = client.post("/v1/predict", json={"input": questions[0]})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "shutting_down"
        assert client.get("/healthz").status_code == 200


class BrokenBackend:
    def __init__(self, inner) -> None:
        self.inner = inner

    name = property(lambda self: self.inner.name)
    variant = property(lambda self: self.inner.variant)
    device = property(lambda self: self.inner.device)

    def setup(self) -> None:
        raise OSError("cannot map the model file")

    def close(self) -> None:
        pass


def test_a_model_that_cannot_load_stops_the_server(onnx_bundle: Path) -> None:
    import threading

    from mindmirror.service.runtime import StudentModel
    from mindmirror.service.server import build_server
    from mindmirror.service.settings import Settings

    from tests.service.conftest import free_port

    settings = Settings(bundle=onnx_bundle, port=free_port())
    model = StudentModel.open(settings)
    model.backend = BrokenBackend(model.backend)
    server = build_server(settings, model)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the server kept running without a model"
    assert server.state.phase == "failed"
    assert "cannot map the model file" in (server.state.failure or "")
