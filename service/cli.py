"""``mindmirror serve BUNDLE``: the service, with flags that override ``MINDMIRROR_*``.

Light at import time (the CLI imports every stage's module to build its help): FastAPI, uvicorn
and the runtimes are imported inside the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

# flag -> (settings field, type, help). Everything else comes from the environment.
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "listen address (MINDMIRROR_HOST, default 127.0.0.1)"),
    "--port": ("port", int, "listen port (MINDMIRROR_PORT, default 8000)"),
    "--backend": ("backend", str, "auto | onnx | pytorch | ctranslate2 (MINDMIRROR_BACKEND)"),
    "--device": ("device", str, "auto | cpu | cuda (MINDMIRROR_DEVICE)"),
    "--variant": ("variant", str, "export variant, e.g. fp32 or int8 (MINDMIRROR_VARIANT)"),
    "--api-keys-file": (
        "api_keys_file",
        Path,
        "file with one API key per line (MINDMIRROR_API_KEYS_FILE)",
    ),
    "--max-batch-size": ("max_batch_size", int, "inputs per batch (MINDMIRROR_MAX_BATCH_SIZE)"),
    "--max-wait-ms": ("max_wait_ms", float, "batch wait in ms (MINDMIRROR_MAX_WAIT_MS)"),
    "--max-queue": ("max_queue", int, "inputs waiting per endpoint (MINDMIRROR_MAX_QUEUE)"),
    "--num-threads": ("num_threads", int, "runtime threads, 0 = all (MINDMIRROR_NUM_THREADS)"),
    "--log-level": ("log_level", str, "debug | info | warning | error (MINDMIRROR_LOG_LEVEL)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="serve a student bundle over HTTP (predict, explain, evaluate)",
        description=(
            "Serve a student bundle over HTTP with dynamic batching and Prometheus metrics. "
            "Every setting is also an environment variable (MINDMIRROR_*, see docs/service.md); "
            "flags given here override the environment."
        ),
    )
    parser.add_argument("bundle", type=Path, help="the student bundle directory")
    for flag, (field, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=text)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from mindmirror.service.server import serve
    from mindmirror.service.settings import load_settings

    overrides = {field: getattr(args, field) for field, _, _ in _FLAGS.values()}
    return serve(load_settings(bundle=args.bundle, **overrides))
