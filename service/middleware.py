"""The ASGI middleware around every request: ids, auth before the body, body limit, request
metrics, the JSON access log and the last-resort 500.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so the handlers still see the client's
disconnect (:meth:`ServiceState.generator` watches for it). The body is read here, up to the
limit, and replayed to the app.
"""

from __future__ import annotations

import json
import logging
import time

from mindmirror.service.auth import api_key_problem
from mindmirror.service.errors import error_body
from mindmirror.service.logs import new_request_id, request_id_var
from mindmirror.service.state import ServiceState
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ServiceMiddleware", "request_id_of"]

logger = logging.getLogger("mindmirror.service")
access_logger = logging.getLogger("mindmirror.access")

_METRIC_ENDPOINTS = {
    "/v1/predict": "predict",
    "/v1/explain": "explain",
    "/v1/evaluate": "evaluate",
    "/v1/model": "model",
}
_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside it)."""
    return scope.get("state", {}).get("request_id")


class ServiceMiddleware:
    """Wraps the app; what it adds to every request is in the module docstring."""

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
    body = json.dumps(error_body(kind, message, request_id)).encode()
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
