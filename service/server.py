"""Running the app under uvicorn, with a drain on SIGTERM.

On SIGTERM (or Ctrl-C) the service marks itself draining at once: ``/readyz`` answers 503 and
new API requests on open connections get 503, so load balancers stop sending work. uvicorn then
closes the listening socket, lets every accepted request finish (up to
``MINDMIRROR_DRAIN_TIMEOUT_S``), and the app's shutdown stops the batchers and the model
worker. The process exits 0 after a drain, 1 when the model could not be loaded.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from mindmirror.service.app import create_app
from mindmirror.service.logs import configure_logging
from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings
from mindmirror.service.state import ServiceState

__all__ = ["DrainingServer", "build_server", "serve"]

logger = logging.getLogger("mindmirror.service")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, plus: the app learns about the signal before the socket closes, and the
    signal is not re-raised after a clean drain (uvicorn would die by it: exit status 143 after
    SIGTERM, a KeyboardInterrupt after Ctrl-C)."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        state.on_fatal = self._fatal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.begin_drain()
        super().handle_exit(sig, frame)
        # A drained shutdown is a success; only a forced one (a second Ctrl-C) keeps uvicorn's
        # re-raise of the signal.
        if not self.force_exit and sig in self._captured_signals:
            self._captured_signals.remove(sig)

    def _fatal(self) -> None:
        self.should_exit = True


def build_server(settings: Settings, model: StudentModel) -> DrainingServer:
    app = create_app(settings, model)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        # uvicorn waits for accepted requests this long after SIGTERM (a float works).
        timeout_graceful_shutdown=settings.drain_timeout_s,  # type: ignore[arg-type]
    )
    return DrainingServer(config, app.state.service)


def serve(settings: Settings) -> int:
    """Load the bundle (fails fast with a clear error), then serve until SIGTERM."""
    configure_logging(settings.log_level)
    model = StudentModel.open(settings)
    backend = model.backend
    logger.info(
        "serving",
        extra={
            "bundle": str(model.bundle),
            "task": model.manifest.task,
            "backend": backend.name,
            "variant": backend.variant,
            "device": backend.device,
            "address": f"http://{settings.host}:{settings.port}",
            "auth": settings.auth_enabled,
        },
    )
    if (
        settings.env == "production"
        and not settings.auth_enabled
        and settings.host
        not in (
            "127.0.0.1",
            "localhost",
            "::1",
        )
    ):
        logger.warning(
            "no API keys are configured and the service listens on %s; anyone who can reach "
            "it can use it (set MINDMIRROR_API_KEYS_FILE, or keep it behind an authenticating "
            "gateway)",
            settings.host,
        )
    server = build_server(settings, model)
    server.run()
    state = server.state
    if state.phase == "failed":
        return 1
    return 0
