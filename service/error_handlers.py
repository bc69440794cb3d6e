"""Every error a route raises becomes the one JSON error body here.

``{"error": {"type", "message", "request_id"}}`` (plus ``fields`` for 422), never a stack
trace. Four kinds of error arrive: the service's own ``ServiceError`` (the status is on the
class), what the model and inference layers refuse (``Rejected``, mapped to a ServiceError by
:func:`as_service_error`, the one place that decides its status), FastAPI's request
validation, and Starlette's 404/405.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mindmirror.service.errors import (
    InvalidInput,
    SelfEvaluationUnavailable,
    ServiceError,
    error_body,
)
from mindmirror.service.middleware import request_id_of
from mindmirror.service.rejections import LimitExceeded, Rejected, SelfEvaluationMissing
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["as_service_error", "install_error_handlers"]

logger = logging.getLogger("mindmirror.service")


def as_service_error(rejection: Rejected) -> ServiceError:
    """The HTTP status of what the model layer refused: 422 naming the field that is over a
    limit, 409 for a verdict the student cannot give."""
    if isinstance(rejection, LimitExceeded):
        return InvalidInput(rejection.field, rejection.detail)
    if isinstance(rejection, SelfEvaluationMissing):
        return SelfEvaluationUnavailable(rejection.message)
    raise TypeError(f"no HTTP status for {type(rejection).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _service_error_response(request, error)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, error: Rejected) -> JSONResponse:
        return _service_error_response(request, as_service_error(error))

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


def _service_error_response(request: Request, error: ServiceError) -> JSONResponse:
    fields = None
    if isinstance(error, InvalidInput):
        fields = [{"field": error.field, "message": error.detail}]
    if error.status >= 500 and error.status != 503:
        logger.warning("request failed: %s", error.message, extra={"status": error.status})
    return _error_response(request, error.status, error.type, error.message, error.headers, fields)


def _error_response(
    request: Request,
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
    fields: list[dict[str, str]] | None = None,
) -> JSONResponse:
    body = error_body(kind, message, request_id_of(request.scope), fields)
    return JSONResponse(body, status_code=status, headers=headers)


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
