"""The HTTP layer: FastAPI routes, auth, limits, errors, metrics and the service's lifecycle.

Nothing here touches a model: handlers turn requests into
:class:`~mindmirror.service.backends.Row`s, hand them to their endpoint's
:class:`~mindmirror.service.batching.Batcher` and turn the generated ids back into answers (``decode
→ predict → encode`` at the request level). See docs/service.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from mindmirror.service.backends import Row
from mindmirror.service.batching import Batcher, BatchLimits, ModelWorker, WorkItem
from mindmirror.service.errors import (
    ClientDisconnected,
    Draining,
    InvalidInput,
    NotReady,
    RequestTimeout,
    SelfEvaluationUnavailable,
    ServiceError,
    Unauthorized,
)
from mindmirror.service.logs import new_request_id, request_id_var
from mindmirror.service.metrics import CONTENT_TYPE_LATEST, ENDPOINTS, Metrics
from mindmirror.service.runtime import StudentModel
from mindmirror.service.schemas import (
    ErrorBody,
    EvaluateRequest,
    EvaluateResponse,
    ExplainRequest,
    ExplainResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    Sample,
)
from mindmirror.service.selfconsistency import Candidate, aggregate
from mindmirror.service.settings import Settings
from mindmirror.student.formats import read_verdict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mindmirror import __version__

__all__ = ["ServiceState", "create_app"]

logger = logging.getLogger("mindmirror.service")
access_logger = logging.getLogger("mindmirror.access")

_METRIC_ENDPOINTS = {
    "/v1/predict": "predict",
    "/v1/explain": "explain",
    "/v1/evaluate": "evaluate",
    "/v1/model": "model",
}
_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


class ServiceState:
    """What the routes share: settings, model, batchers, readiness."""

    def __init__(self, settings: Settings, model: StudentModel, metrics: Metrics) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.key_digests = settings.api_key_digests()
        self.worker: ModelWorker | None = None
        self.batchers: dict[str, Batcher] = {}
        self.phase = "starting"  # starting → loading → warming_up → ready | failed; draining
        self.draining = False
        self.failure: str | None = None
        #: called when the model cannot load, so the server exits instead of idling unready
        self.on_fatal: Callable[[], None] | None = None
        self._load_task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.phase == "ready" and not self.draining

    async def start(self) -> None:
        self.worker = ModelWorker()
        limits = BatchLimits(
            max_batch_size=self.settings.max_batch_size,
            max_wait_s=self.settings.max_wait_ms / 1000,
            max_batch_tokens=self.settings.max_batch_tokens,
            max_queue=self.settings.max_queue,
        )
        for endpoint in ENDPOINTS:
            batcher = Batcher(endpoint, self.worker, self.model.generate, limits, self.metrics)
            batcher.start()
            self.batchers[endpoint] = batcher
        self._load_task = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        assert self.worker is not None
        try:
            self.phase = "loading"
            await self.worker.call(self.model.setup)
            self.phase = "warming_up"
            await self.worker.call(self.model.warmup, self.settings.max_batch_size)
        except Exception as error:
            self.phase = "failed"
            self.failure = f"{type(error).__name__}: {error}"
            logger.critical("the model could not be loaded; exiting", exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal()
            return
        backend = self.model.backend
        self.metrics.model_info.labels(
            self.model.manifest.task, backend.name, backend.variant, backend.device
        ).set(1)
        self.phase = "ready"
        logger.info(
            "ready",
            extra={"backend": backend.name, "variant": backend.variant, "device": backend.device},
        )

    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            logger.info("draining: refusing new work, finishing accepted requests")

    async def stop(self) -> None:
        self.begin_drain()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        # uvicorn has already waited (up to the drain timeout) for every accepted request, so
        # what is left is at most a batch nobody waits for; do not wait a second drain period.
        await asyncio.gather(*(b.close(timeout_s=1.0) for b in self.batchers.values()))
        if self.worker is not None:
            await asyncio.to_thread(self.worker.shutdown)
        self.model.close()

    async def generate(
        self, endpoint: str, rows: Sequence[Row], request: Request, force: bool = False
    ) -> list[list[int]]:
        """Queue rows on the endpoint's batcher and wait for them (deadline, disconnect)."""
        if self.draining:
            raise Draining("the server is shutting down; retry on another replica")
        batcher = self.batchers[endpoint]
        state = request.scope.get("state", {})
        deadline = state.get("received", time.monotonic()) + self.settings.request_timeout_s
        items = batcher.submit(rows, state.get("request_id", "-"), deadline, force=force)
        return await _wait(request, batcher, items, deadline, self.settings.request_timeout_s)


async def _wait_for_disconnect(request: Request) -> None:
    # The body was already read, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)  # some servers repeat an empty body message: do not spin


def _timeout(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(
        f"the request did not complete within {timeout_s:g} s (MINDMIRROR_REQUEST_TIMEOUT_S)"
    )


async def _wait(
    request: Request, batcher: Batcher, items: list[WorkItem], deadline: float, timeout_s: float
) -> list[list[int]]:
    results = asyncio.gather(*(item.future for item in items), return_exceptions=True)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {results, watcher},
            timeout=max(deadline - time.monotonic(), 0),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if results in done:
            outputs = results.result()
            for output in outputs:
                if isinstance(output, asyncio.CancelledError):
                    # The batcher dropped it: its deadline passed while it was queued.
                    raise _timeout(timeout_s)
                if isinstance(output, BaseException):
                    raise output
            return outputs
        batcher.withdraw(items)
        results.cancel()
        if watcher in done:
            raise ClientDisconnected("the client disconnected; its queued work was dropped")
        raise _timeout(timeout_s)
    except asyncio.CancelledError:
        batcher.withdraw(items)
        results.cancel()
        raise
    finally:
        watcher.cancel()


# ----- middleware ------------------------------------------------------------------------------
class ServiceMiddleware:
    """Request ids, body size limit, request metrics, JSON access log, last-resort 500.

    A pure ASGI middleware (not ``BaseHTTPMiddleware``) so the handlers still see the client's
    disconnect. The body is read here, up to the limit, and replayed to the app.
    """

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = new_request_id(headers.get("x-request-id"))
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["received"] = time.monotonic()
        path = scope.get("path", "")
        endpoint = _METRIC_ENDPOINTS.get(path)
        status = {"code": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            if path.startswith("/v1/") and self.state.key_digests:
                # Before the body is read: an unauthenticated client gets nothing but 401.
                problem = api_key_problem(headers.get("authorization"), self.state.key_digests)
                if problem is not None:
                    await _send_error(
                        send_with_id,
                        401,
                        "unauthorized",
                        problem,
                        request_id,
                        [(b"www-authenticate", b"Bearer")],
                    )
                    return
            replay = await self._read_body(scope, receive, headers, send_with_id)
            if replay is not None:
                await self.app(scope, replay, send_with_id)
        except Exception:
            logger.error("unhandled error", exc_info=True)
            if not status["started"]:
                await _send_error(
                    send_with_id,
                    500,
                    "internal_error",
                    "internal error; the server log has the details for this request id",
                    request_id,
                )
        finally:
            elapsed = time.perf_counter() - started
            code = status["code"] if status["started"] else 499
            if endpoint is not None:
                self.state.metrics.requests.labels(endpoint, str(code)).inc()
                self.state.metrics.request_latency.labels(endpoint).observe(elapsed)
            access_logger.log(
                logging.DEBUG if path in _QUIET_PATHS and code < 400 else logging.INFO,
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )
            request_id_var.reset(token)

    async def _read_body(
        self, scope: Scope, receive: Receive, headers: dict[str, str], send: Send
    ) -> Receive | None:
        """Read the body within the limit; a receive that replays it, or None if answered."""
        limit = self.state.settings.max_body_bytes
        request_id = scope["state"]["request_id"]
        too_large = f"the request body is larger than {limit} bytes (MINDMIRROR_MAX_BODY_BYTES)"
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, "payload_too_large", too_large, request_id)
            return None
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _send_error(send, 413, "payload_too_large", too_large, request_id)
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replay() -> Message:
            if pending:
                return pending.pop()
            return await receive()

        return replay


async def _send_error(
    send: Send,
    status: int,
    kind: str,
    message: str,
    request_id: str | None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(
        {"error": {"type": kind, "message": message, "request_id": request_id}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_response(
    request: Request,
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
    fields: list[dict[str, str]] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {
        "type": kind,
        "message": message,
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    if fields is not None:
        error["fields"] = fields
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _field_name(location: Sequence[Any]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


# ----- dependencies ----------------------------------------------------------------------------
def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def api_key_problem(header: str | None, digests: Sequence[bytes]) -> str | None:
    """Why an ``Authorization`` header is not accepted, or None when it is.

    Every stored key is compared (no early exit), digest to digest, with
    ``hmac.compare_digest``: the time taken says nothing about the keys."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "missing API key: send the header `Authorization: Bearer <key>`"
    digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
    matched = False
    for known in digests:
        matched |= hmac.compare_digest(known, digest)
    return None if matched else "invalid API key"


def require_api_key(request: Request, state: StateDep) -> None:
    """The route-level check (the middleware already refused bad keys before the body)."""
    if state.key_digests:
        problem = api_key_problem(request.headers.get("authorization"), state.key_digests)
        if problem is not None:
            raise Unauthorized(problem)


def require_ready(state: StateDep) -> None:
    if state.draining:
        raise Draining("the server is shutting down; retry on another replica")
    if not state.ready:
        raise NotReady(f"the model is not ready yet ({state.phase.replace('_', ' ')})")


Authorized = Annotated[None, Depends(require_api_key)]
Ready = Annotated[None, Depends(require_ready)]


# ----- routes ----------------------------------------------------------------------------------
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
    limit = state.settings.max_predict_inputs
    if len(texts) > limit:
        raise InvalidInput(
            "inputs",
            f"has {len(texts)} items; the limit is {limit} (MINDMIRROR_MAX_PREDICT_INPUTS)",
        )
    model = state.model
    prefixes = model.manifest.prefixes
    ids = model.encode_inputs([prefixes.cot_input(t, "predict") for t in texts], fields)
    rows = [Row(row, model.limits.max_new_tokens_predict) for row in ids]
    outputs = await state.generate("predict", rows, request)
    predictions = []
    for text in model.decode(outputs):
        label, answer = model.read_label(text)
        predictions.append(Prediction(label=text, answer=answer, valid=label is not None))
    return PredictResponse(predictions=predictions, request_id=_request_id(request))


@router.post("/explain", response_model=ExplainResponse, summary="Rationale and label")
async def explain(
    body: ExplainRequest, request: Request, state: StateDep, _auth: Authorized, _ready: Ready
) -> ExplainResponse:
    model = state.model
    cap = model.limits.max_new_tokens_explain
    max_new = body.max_new_tokens or cap
    if max_new > cap:
        raise InvalidInput(
            "max_new_tokens",
            f"is {max_new}; the limit is {cap} (MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN)",
        )
    if body.num_samples > state.settings.max_samples:
        raise InvalidInput(
            "num_samples",
            f"is {body.num_samples}; the limit is {state.settings.max_samples} "
            "(MINDMIRROR_MAX_SAMPLES)",
        )
    prefixes = model.manifest.prefixes
    label_ids, rationale_ids = model.encode_inputs(
        [prefixes.cot_input(body.input, "predict"), prefixes.cot_input(body.input, "explain")],
        ["input", "input"],
    )
    k = body.num_samples
    predict_max = model.limits.max_new_tokens_predict
    if k == 1:
        outputs = await state.generate(
            "explain", [Row(label_ids, predict_max), Row(rationale_ids, max_new)], request
        )
        label_text, rationale = model.decode(outputs)
        label, answer = model.read_label(label_text)
        return ExplainResponse(
            label=label_text,
            answer=answer,
            valid=label is not None,
            rationale=rationale,
            num_samples=1,
            request_id=_request_id(request),
        )

    seed = body.seed if body.seed is not None else secrets.randbits(32)

    def sampled(ids: list[int], budget: int, index: int, stream: int) -> Row:
        if index == 0:  # sample 0 is the greedy answer
            return Row(ids, budget)
        return Row(
            ids,
            budget,
            temperature=body.temperature,
            top_k=body.top_k,
            seed=(seed * 1_000_003 + stream * 7_919 + index) % 2**32,
        )

    rows = [sampled(label_ids, predict_max, i, 1) for i in range(k)]
    rows += [sampled(rationale_ids, max_new, i, 2) for i in range(k)]
    outputs = model.decode(await state.generate("explain", rows, request))
    label_texts, rationales = outputs[:k], outputs[k:]
    parsed = [model.read_label(text) for text in label_texts]

    verdicts: list[Any] = [None] * k
    scored = model.manifest.self_evaluation
    if scored:
        # Judge each distinct (label, rationale) once, with the stage-1 input format. The chain
        # of thought is built from the normalized label when there is one.
        cots = [
            model.format_cot(rationale, label or text)
            for (label, _), text, rationale in zip(parsed, label_texts, rationales, strict=True)
        ]
        distinct = list(dict.fromkeys(cots))
        texts = [prefixes.self_eval_input(body.input, cot, "predict") for cot in distinct]
        # Internal inputs: a long sampled rationale is cut rather than failing the request.
        eval_ids = [
            model.codec.truncate(ids, model.limits.max_input_tokens)
            for ids in model.codec.encode(texts)
        ]
        judged = model.decode(
            await state.generate(
                "explain", [Row(ids, predict_max) for ids in eval_ids], request, force=True
            )
        )
        by_cot = {cot: read_verdict(text) for cot, text in zip(distinct, judged, strict=True)}
        verdicts = [by_cot[cot] for cot in cots]

    candidates = [
        Candidate(text, label, answer, rationale, verdict)
        for text, (label, answer), rationale, verdict in zip(
            label_texts, parsed, rationales, verdicts, strict=True
        )
    ]
    decision = aggregate(candidates, body.aggregate, scored=scored)
    chosen = candidates[decision.index]
    samples = None
    if body.return_samples:
        samples = [
            Sample(
                label=c.label_text,
                answer=c.answer,
                valid=c.label is not None,
                rationale=c.rationale,
                verdict=c.verdict,
            )
            for c in candidates
        ]
    return ExplainResponse(
        label=chosen.label_text,
        answer=chosen.answer,
        valid=chosen.label is not None,
        rationale=chosen.rationale,
        num_samples=k,
        confidence=round(decision.confidence, 6),
        support=decision.support,
        samples=samples,
        request_id=_request_id(request),
    )


@router.post("/evaluate", response_model=EvaluateResponse, summary="Self-evaluation verdict")
async def evaluate(
    body: EvaluateRequest, request: Request, state: StateDep, _auth: Authorized, _ready: Ready
) -> EvaluateResponse:
    model = state.model
    if not model.manifest.self_evaluation:
        raise SelfEvaluationUnavailable(
            "this student was trained without self-evaluation (manifest self_evaluation=false), "
            "so it cannot judge reasoning; distil it with self-evaluation data to use "
            "/v1/evaluate"
        )
    cap = model.limits.max_new_tokens_explain
    max_new = body.max_new_tokens or cap
    if max_new > cap:
        raise InvalidInput(
            "max_new_tokens",
            f"is {max_new}; the limit is {cap} (MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN)",
        )
    reasoning = body.reasoning
    if body.answer is not None:
        reasoning = model.format_cot(body.reasoning, body.answer)
    prefixes = model.manifest.prefixes
    modes = ["predict", "explain"] if body.include_rationale else ["predict"]
    ids = model.encode_inputs(
        [prefixes.self_eval_input(body.question, reasoning, mode) for mode in modes],  # type: ignore[arg-type]
        ["reasoning"] * len(modes),
    )
    rows = [Row(ids[0], model.limits.max_new_tokens_predict)]
    if body.include_rationale:
        rows.append(Row(ids[1], max_new))
    texts = model.decode(await state.generate("evaluate", rows, request))
    return EvaluateResponse(
        verdict=read_verdict(texts[0]),
        verdict_text=texts[0],
        rationale=texts[1] if body.include_rationale else None,
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


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "-")


# ----- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings, model: StudentModel) -> FastAPI:
    """The ASGI app for ``model``. The model is loaded and warmed up in the background once
    the app starts (``/readyz`` turns 200 then)."""
    metrics = Metrics()
    state = ServiceState(settings, model, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    docs = settings.docs_enabled
    app = FastAPI(
        title="mindmirror",
        version=__version__,
        description="A distilled, self-evaluating T5 student (Mind's Mirror) over HTTP.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(router)

    @app.get("/healthz", include_in_schema=docs, summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=docs, summary="Loaded, warmed up, not draining")
    async def readyz() -> Response:
        if state.ready:
            return JSONResponse({"status": "ready"})
        status = "draining" if state.draining else state.phase
        body: dict[str, Any] = {"status": status}
        if state.failure:
            body["error"] = state.failure
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        fields = None
        if isinstance(error, InvalidInput):
            fields = [{"field": error.field, "message": error.detail}]
        if error.status >= 500 and error.status != 503:
            logger.warning("request failed: %s", error.message, extra={"status": error.status})
        return _error_response(
            request, error.status, error.type, error.message, error.headers, fields
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = []
        for item in error.errors():
            location = item.get("loc", ())
            if item.get("type") == "json_invalid":
                message = f"invalid JSON ({item.get('ctx', {}).get('error', 'cannot parse')})"
                fields.append({"field": "body", "message": message})
                continue
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            if tuple(location) == ("body",) and item.get("type") == "model_attributes_type":
                message = "must be a JSON object, sent with Content-Type: application/json"
            fields.append({"field": _field_name(location), "message": message})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return _error_response(request, 422, "invalid_request", summary, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return _error_response(
            request,
            error.status_code,
            kinds.get(error.status_code, "http_error"),
            str(error.detail),
            dict(error.headers or {}),
        )

    app.add_middleware(ServiceMiddleware, state=state)
    return app
