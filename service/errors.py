"""Errors the HTTP layer turns into responses: one class per status, one JSON shape for all.

Every error body is ``{"error": {"type": ..., "message": ..., "request_id": ...}}`` (plus
``fields`` for 422), never a stack trace. The request id is also in the ``X-Request-ID`` header
and in the server's JSON log line for the request, which is where the details live.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendFailure",
    "ClientDisconnected",
    "Draining",
    "InvalidInput",
    "NotReady",
    "QueueFull",
    "RequestTimeout",
    "SelfEvaluationUnavailable",
    "ServiceError",
    "Unauthorized",
    "error_body",
]


def error_body(
    kind: str, message: str, request_id: str | None, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The one JSON shape of every error response (the middleware's and the handlers')."""
    error: dict[str, Any] = {"type": kind, "message": message, "request_id": request_id}
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


class ServiceError(Exception):
    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(ServiceError):
    """A field is valid JSON but unusable (e.g. too many tokens); names the field."""

    status = 422
    type = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class Unauthorized(ServiceError):
    status = 401
    type = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class SelfEvaluationUnavailable(ServiceError):
    status = 409
    type = "self_evaluation_unavailable"


class QueueFull(ServiceError):
    status = 429
    type = "queue_full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class ClientDisconnected(ServiceError):
    # nginx's "client closed request": recorded in metrics and logs, never seen by a client.
    status = 499
    type = "client_disconnected"


class BackendFailure(ServiceError):
    status = 500
    type = "backend_error"


class NotReady(ServiceError):
    status = 503
    type = "not_ready"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "5"})


class Draining(ServiceError):
    status = 503
    type = "shutting_down"


class RequestTimeout(ServiceError):
    status = 504
    type = "timeout"
