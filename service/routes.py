"""The HTTP routes: validate the body, make one call into the inference layer, shape the answer.

The request and response bodies are :mod:`mindmirror.service.schemas`; the work is
:class:`~mindmirror.service.inference.Inference`, reached through the service state with
``generate`` bound to the request (:meth:`ServiceState.generator`). What the inference layer
refuses comes back as an exception the error handlers map to its status.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from mindmirror.service.auth import Authorized
from mindmirror.service.inference import Answer, Sampling
from mindmirror.service.metrics import CONTENT_TYPE_LATEST
from mindmirror.service.middleware import request_id_of
from mindmirror.service.schemas import (
    ErrorBody,
    EvaluateRequest,
    EvaluateResponse,
    ExplainRequest,
    ExplainResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    RationaleCheckBody,
    Sample,
    VerdictProbabilities,
)
from mindmirror.service.selfconsistency import Candidate
from mindmirror.service.state import Ready, StateDep
from mindmirror.student.tasks.base import NO_CHECK

from mindmirror import __version__

__all__ = ["probe_routes", "router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing or wrong API key.",
        413: "Body larger than MINDMIRROR_MAX_BODY_BYTES.",
        422: "Invalid field (named in the message).",
        429: "Queue full; see Retry-After.",
        500: "The model failed on this request's batch.",
        503: "Not ready (loading) or shutting down.",
        504: "Not done within MINDMIRROR_REQUEST_TIMEOUT_S.",
    }.items()
}

router = APIRouter(prefix="/v1", responses=_ERRORS)


@router.post("/predict", response_model=PredictResponse, summary="Labels for one or more inputs")
async def predict(
    body: PredictRequest, request: Request, state: StateDep, _auth: Authorized, _ready: Ready
) -> PredictResponse:
    texts, fields = body.texts()
    answers = await state.inference.predict(texts, fields, state.generator(request))
    return PredictResponse(
        predictions=[_prediction(answer) for answer in answers], request_id=_request_id(request)
    )


@router.post("/explain", response_model=ExplainResponse, summary="Rationale and label")
async def explain(
    body: ExplainRequest, request: Request, state: StateDep, _auth: Authorized, _ready: Ready
) -> ExplainResponse:
    sampling = Sampling(
        num_samples=body.num_samples,
        temperature=body.temperature,
        top_k=body.top_k,
        aggregate=body.aggregate,
        seed=body.seed,
    )
    result = await state.inference.explain(
        body.input, body.max_new_tokens, sampling, state.generator(request)
    )
    chosen = result.chosen
    samples = None
    if body.return_samples and result.samples is not None:
        samples = [_sample(candidate) for candidate in result.samples]
    return ExplainResponse(
        label=chosen.label_text,
        answer=chosen.answer,
        valid=chosen.valid,
        rationale=chosen.rationale,
        consistent=chosen.consistent,
        check=_check(chosen),
        num_samples=result.num_samples,
        confidence=None if result.confidence is None else round(result.confidence, 6),
        support=result.support,
        samples=samples,
        request_id=_request_id(request),
    )


@router.post("/evaluate", response_model=EvaluateResponse, summary="Self-evaluation verdict")
async def evaluate(
    body: EvaluateRequest, request: Request, state: StateDep, _auth: Authorized, _ready: Ready
) -> EvaluateResponse:
    result = await state.inference.evaluate(
        body.question,
        body.reasoning,
        body.answer,
        body.include_rationale,
        body.max_new_tokens,
        state.generator(request),
    )
    scores = result.scores
    return EvaluateResponse(
        verdict=scores.verdict,
        score=scores.score,
        threshold=state.model.calibration.threshold,
        probabilities=VerdictProbabilities(**scores.probabilities),
        generated_verdict=result.generated_verdict,
        verdict_text=result.verdict_text,
        rationale=result.rationale,
        request_id=_request_id(request),
    )


@router.get("/model", summary="What is being served")
async def model_info(state: StateDep, _auth: Authorized) -> dict[str, Any]:
    info = state.model.info()
    settings = state.settings
    info["service"] = {
        "version": __version__,
        "phase": state.phase,
        "max_batch_size": settings.max_batch_size,
        "max_wait_ms": settings.max_wait_ms,
        "max_batch_tokens": settings.max_batch_tokens,
        "max_queue": settings.max_queue,
        "request_timeout_s": settings.request_timeout_s,
        "max_predict_inputs": settings.max_predict_inputs,
        "max_samples": settings.max_samples,
        "auth": settings.auth_enabled,
    }
    return info


def probe_routes(include_in_schema: bool) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics``: never behind a key, never queued."""
    probes = APIRouter()

    @probes.get("/healthz", include_in_schema=include_in_schema, summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @probes.get(
        "/readyz", include_in_schema=include_in_schema, summary="Loaded, warmed up, not draining"
    )
    async def readyz(state: StateDep) -> Response:
        if state.ready:
            return JSONResponse({"status": "ready"})
        status = "draining" if state.draining else state.phase
        body: dict[str, Any] = {"status": status}
        if state.failure:
            body["error"] = state.failure
        return JSONResponse(body, status_code=503)

    @probes.get("/metrics", include_in_schema=False)
    async def metrics(state: StateDep) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return probes


def _prediction(answer: Answer) -> Prediction:
    return Prediction(label=answer.label_text, answer=answer.answer, valid=answer.valid)


def _sample(candidate: Candidate) -> Sample:
    return Sample(
        label=candidate.label_text,
        answer=candidate.answer,
        valid=candidate.valid,
        rationale=candidate.rationale,
        verdict=candidate.verdict,
        score=candidate.score,
        consistent=candidate.consistent,
        check=_check(candidate),
    )


def _check(candidate: Candidate) -> RationaleCheckBody:
    check = candidate.check or NO_CHECK
    return RationaleCheckBody(
        steps=check.steps, steps_right=check.steps_right, stated=check.stated, reason=check.reason
    )


def _request_id(request: Request) -> str:
    return request_id_of(request.scope) or "-"
