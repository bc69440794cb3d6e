"""API keys: the constant-time check, used twice (before the body, and per route).

The middleware refuses a bad key before it reads the body, so an unauthenticated client gets
nothing but 401; the route dependency (``Authorized``) repeats the check so a route never
depends on the middleware being installed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request
from mindmirror.service.errors import Unauthorized
from mindmirror.service.state import StateDep

__all__ = ["Authorized", "api_key_problem"]


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


Authorized = Annotated[None, Depends(require_api_key)]
