"""A real uvicorn server on 127.0.0.1 serving the tiny bundle through ONNX Runtime."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import metric, running_server
from tests.tiny_student import make_problems

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(onnx_bundle: Path):
    # A long max wait makes concurrent requests meet in one batch even on a slow, shared CPU.
    with running_server(onnx_bundle, max_wait_ms=50, max_body_bytes=8192) as running:
        yield running


def test_every_endpoint_answers(server, questions: list[str]) -> None:
    problem = make_problems(1, seed=3)[0]
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}

        single = client.post("/v1/predict", json={"input": problem.question})
        assert single.status_code == 200, single.text
        [prediction] = single.json()["predictions"]
        # The tiny student really answers: a parseable equation with its value.
        assert prediction["valid"] is True
        assert isinstance(prediction["answer"], float)
        assert single.headers["x-request-id"] == single.json()["request_id"]

        many = client.post("/v1/predict", json={"inputs": questions[:5]}).json()
        assert len(many["predictions"]) == 5
        # Batched answers equal one-at-a-time answers, in order.
        for question, got in zip(questions[:5], many["predictions"], strict=True):
            alone = client.post("/v1/predict", json={"input": question}).json()
            assert alone["predictions"][0] == got

        explained = client.post("/v1/explain", json={"input": problem.question}).json()
        assert explained["num_samples"] == 1
        assert explained["confidence"] is None
        assert len(explained["rationale"].split()) >= 3
        assert explained["label"] == prediction["label"]
        # Whether the rationale supports the label, and the calculator made its steps right.
        assert explained["consistent"] in (True, False)
        assert set(explained["check"]) == {"steps", "steps_right", "stated", "reason"}
        assert explained["check"]["steps_right"] == explained["check"]["steps"]
        assert client.get("/v1/model").json()["calculator"]["enabled"] is True

        sampled = client.post(
            "/v1/explain",
            json={"input": problem.question, "num_samples": 4, "seed": 7, "return_samples": True},
        ).json()
        assert sampled["num_samples"] == 4
        assert len(sampled["samples"]) == 4
        assert 0.0 <= sampled["confidence"] <= 1.0
        assert all(
            s["verdict"] in ("correct", "wrong", "uncertain", None) for s in sampled["samples"]
        )
        assert all(s["check"]["steps_right"] == s["check"]["steps"] for s in sampled["samples"])
        returned = [
            s
            for s in sampled["samples"]
            if (s["label"], s["rationale"]) == (sampled["label"], sampled["rationale"])
        ]
        assert returned[0]["check"] == sampled["check"]
        # Sample 0 is the greedy answer; the same seed gives the same samples.
        assert sampled["samples"][0]["label"] == prediction["label"]
        again = client.post(
            "/v1/explain",
            json={"input": problem.question, "num_samples": 4, "seed": 7, "return_samples": True},
        ).json()
        assert again["samples"] == sampled["samples"]

        judged = client.post(
            "/v1/evaluate",
            json={
                "question": problem.question,
                "reasoning": problem.rationale,
                "answer": problem.label,
            },
        )
        assert judged.status_code == 200, judged.text
        body = judged.json()
        assert body["verdict"] in ("correct", "wrong", "uncertain")
        assert body["rationale"]
        wrong = client.post(
            "/v1/evaluate",
            json={
                "question": problem.question,
                "reasoning": problem.wrong_rationale,
                "answer": problem.wrong_label,
                "include_rationale": False,
            },
        ).json()
        assert wrong["rationale"] is None
        # The tiny student learnt to tell its right and wrong chains of thought apart, and its
        # scores say so: a calibrated score, the uncalibrated threshold, probabilities that
        # sum to one, and the greedy verdict beside the scored one.
        assert (body["verdict"], wrong["verdict"]) == ("correct", "wrong")
        assert 0 <= wrong["score"] < body["threshold"] <= body["score"] <= 1
        assert body["threshold"] == 0.5
        assert sum(body["probabilities"].values()) == pytest.approx(1.0)
        assert body["generated_verdict"] in ("correct", "wrong", "uncertain", None)

        info = client.get("/v1/model").json()
        assert info["task"] == "svamp"
        assert info["backend"] == "onnx"
        assert info["variant"] == "fp32"
        assert info["device"] == "cpu"
        assert info["self_evaluation"] is True

        text = client.get("/metrics").text
        assert metric(text, "mindmirror_requests_total", endpoint="predict", status="200") >= 7
        assert (
            metric(
                text,
                "mindmirror_model_info",
                task="svamp",
                backend="onnx",
                variant="fp32",
                device="cpu",
            )
            == 1
        )
        assert metric(text, "mindmirror_generated_tokens_total", endpoint="explain") > 0
        # Every metric docs/contracts.md promises the dashboard and the HPA.
        for name in (
            "mindmirror_requests_total",
            "mindmirror_request_latency_seconds_bucket",
            "mindmirror_queue_wait_seconds_bucket",
            "mindmirror_inference_seconds_bucket",
            "mindmirror_batch_size_bucket",
            "mindmirror_queue_depth",
            "mindmirror_generated_tokens_total",
            "mindmirror_model_info",
        ):
            assert f"\n{name}{{" in text, name
        assert client.get("/openapi.json").status_code == 200  # development: docs on


def test_concurrent_requests_are_batched_and_answered_individually(
    server, questions: list[str]
) -> None:
    with server.client() as client:
        expected = {
            q: client.post("/v1/predict", json={"input": q}).json()["predictions"][0]
            for q in questions[:24]
        }
        before = client.get("/metrics").text

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/v1/predict", json={"input": q}) for q in questions[:24])
            )

    responses = asyncio.run(fire())
    for question, response in zip(questions[:24], responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0] == expected[question]
    with server.client() as client:
        after = client.get("/metrics").text

    def batches(text: str, le: str | None = None) -> float:
        if le is None:
            return metric(text, "mindmirror_batch_size_count", endpoint="predict")
        return metric(text, "mindmirror_batch_size_bucket", endpoint="predict", le=le)

    new_batches = batches(after) - batches(before)
    singles = batches(after, "1.0") - batches(before, "1.0")
    assert new_batches < 24, "24 concurrent requests ran in 24 separate batches"
    assert new_batches - singles >= 1, "no batch held more than one request"


def test_error_paths_return_their_status_and_a_clear_message(server, questions) -> None:
    with server.client() as client:
        bad_json = client.post("/v1/predict", content=b'{"input": ', headers=JSON)
        assert bad_json.status_code == 422
        assert bad_json.json()["error"]["fields"][0]["field"] == "body"
        assert "invalid JSON" in bad_json.json()["error"]["message"]

        empty = client.post("/v1/predict", json={"inputs": []})
        assert empty.status_code == 422
        assert "inputs" in empty.json()["error"]["message"]

        both = client.post("/v1/predict", json={"input": "a", "inputs": ["b"]})
        assert both.status_code == 422
        assert "exactly one" in both.json()["error"]["message"]

        unknown = client.post("/v1/predict", json={"input": "a", "temprature": 1})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["fields"][0]["field"] == "temprature"

        wrong_type = client.post("/v1/explain", json={"input": "q", "num_samples": "many"})
        assert wrong_type.json()["error"]["fields"][0]["field"] == "num_samples"

        long_input = " ".join(["apples"] * 200)
        too_long = client.post("/v1/predict", json={"inputs": [questions[0], long_input]})
        assert too_long.status_code == 422
        error = too_long.json()["error"]
        assert error["fields"][0]["field"] == "inputs[1]"
        assert "the limit is 128" in error["message"]
        assert "MINDMIRROR_MAX_INPUT_TOKENS" in error["message"]

        over_cap = client.post("/v1/explain", json={"input": "q", "max_new_tokens": 49})
        assert over_cap.status_code == 422
        assert over_cap.json()["error"]["fields"][0]["field"] == "max_new_tokens"
        assert "limit is 48" in over_cap.json()["error"]["message"]

        samples = client.post("/v1/explain", json={"input": "q", "num_samples": 9})
        assert samples.status_code == 422
        assert "MINDMIRROR_MAX_SAMPLES" in samples.text

        too_many = client.post("/v1/predict", json={"inputs": ["q"] * 65})
        assert too_many.status_code == 422
        assert too_many.json()["error"]["fields"][0]["field"] == "inputs"

        huge = client.post(
            "/v1/predict", content=b'{"input": "' + b"a" * 9000 + b'"}', headers=JSON
        )
        assert huge.status_code == 413
        assert "8192 bytes" in huge.json()["error"]["message"]

        missing = client.get("/v2/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found"

        # Whatever failed, the body names the request and never carries a traceback.
        for response in (bad_json, too_long, huge, missing):
            assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
            assert "Traceback" not in response.text

        # The server is still fine.
        assert client.post("/v1/predict", json={"input": questions[0]}).status_code == 200
        text = client.get("/metrics").text
        assert metric(text, "mindmirror_requests_total", endpoint="predict", status="413") == 1


def test_client_request_id_is_kept(server) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/predict", json={"input": "Tom has 3 coins."}, headers={"X-Request-ID": "abc-123"}
        )
        assert response.headers["x-request-id"] == "abc-123"
        assert response.json()["request_id"] == "abc-123"
        # An unsafe id is replaced, not echoed.
        odd = client.post(
            "/v1/predict", json={"input": "Tom has 3 coins."}, headers={"X-Request-ID": "a b\x7f"}
        )
        assert odd.headers["x-request-id"] != "a b\x7f"


def test_api_keys(onnx_bundle: Path) -> None:
    key = "k" * 12 + "-secret-key"
    with (
        running_server(onnx_bundle, api_keys=[key, "another-key-0123456789"]) as running,
        running.client() as client,
    ):
        missing = client.post("/v1/predict", json={"input": "q"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in missing.json()["error"]["message"]
        wrong = client.post(
            "/v1/predict", json={"input": "q"}, headers={"Authorization": f"Bearer {key}x"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "invalid API key"
        basic = client.get("/v1/model", headers={"Authorization": f"Basic {key}"})
        assert basic.status_code == 401
        good = client.post(
            "/v1/predict", json={"input": "q"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert good.status_code == 200
        other = client.get("/v1/model", headers={"Authorization": "bearer another-key-0123456789"})
        assert other.status_code == 200
        assert other.json()["service"]["auth"] is True
        # Probes and scraping never need a key.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200
        text = client.get("/metrics").text
        assert metric(text, "mindmirror_requests_total", endpoint="predict", status="401") == 2


def test_evaluate_is_409_without_self_evaluation(no_self_eval_bundle: Path) -> None:
    with (
        running_server(no_self_eval_bundle, env="production") as running,
        running.client() as client,
    ):
        response = client.post("/v1/evaluate", json={"question": "q", "reasoning": "r"})
        assert response.status_code == 409
        assert "without self-evaluation" in response.json()["error"]["message"]
        # Explain still samples and votes, by agreement weighed by the rationale check.
        body = client.post(
            "/v1/explain",
            json={
                "input": "Tom has 12 apples. Tom gets 7 more.\nHow many apples now?",
                "num_samples": 3,
                "seed": 1,
                "return_samples": True,
            },
        ).json()
        assert all(sample["verdict"] is None for sample in body["samples"])
        # Each agreeing sample counts 1, or 0.5 when its rationale does not support it.
        agreeing = sum(
            0.5 if s["consistent"] is False else 1.0
            for s in body["samples"]
            if s["answer"] == body["answer"]
        )
        assert body["confidence"] == pytest.approx(agreeing / 3)
        # Production: no OpenAPI pages.
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404


def test_json_body_is_required(server) -> None:
    with server.client() as client:
        form = client.post(
            "/v1/predict",
            content=b"input=hello",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 422
        assert "JSON" in form.json()["error"]["message"]
        assert json.loads(form.text)["error"]["fields"][0]["field"] == "body"
