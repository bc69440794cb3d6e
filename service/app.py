"""The ASGI app: one FastAPI application wired from the service's parts.

A request flows ``ServiceMiddleware`` (ids, auth, body limit, metrics, access log) → a route
(:mod:`~mindmirror.service.routes`: validation and response shaping) →
:class:`~mindmirror.service.inference.Inference` (inputs, ids, self-consistency) → the
endpoint's :class:`~mindmirror.service.batching.Batcher` → the model worker → the backend.
Errors on the way become JSON bodies in :mod:`~mindmirror.service.error_handlers`; the
lifecycle (load, warm up, drain, stop) is :class:`~mindmirror.service.state.ServiceState`.
See docs/service.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from mindmirror.service.error_handlers import install_error_handlers
from mindmirror.service.metrics import Metrics
from mindmirror.service.middleware import ServiceMiddleware
from mindmirror.service.routes import probe_routes, router
from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings
from mindmirror.service.state import ServiceState

from mindmirror import __version__

__all__ = ["create_app"]


def create_app(settings: Settings, model: StudentModel) -> FastAPI:
    """The ASGI app for ``model``. The model is loaded and warmed up in the background once
    the app starts (``/readyz`` turns 200 then); ``app.state.service`` is its
    :class:`ServiceState`."""
    state = ServiceState(settings, model, Metrics())

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
    app.include_router(probe_routes(include_in_schema=docs))
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, state=state)
    return app
