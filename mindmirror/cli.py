"""The ``mindmirror`` command: one entry point, one subcommand per stage.

Each stage owns its subcommands in a small ``cli`` module exposing ``register(subparsers)``.
Those modules import nothing heavy at import time (torch, onnxruntime, fastapi are imported
inside the command functions) so ``mindmirror --help`` is instant and the serving image, which
has no training stack, can still run ``mindmirror serve``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mindmirror import __version__
from mindmirror.student.errors import MindmirrorError

# Order is the order of the help text: the pipeline's order.
COMMAND_MODULES: tuple[str, ...] = (
    "mindmirror.training.teacher.cli",
    "mindmirror.training.student.cli",
    "mindmirror.export.cli",
    "mindmirror.service.cli",
    "mindmirror.demo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindmirror",
        description=(
            "Distil a teacher LLM into a small self-evaluating T5 student (Mind's Mirror), "
            "export it to ONNX and serve it over HTTP."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mindmirror {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages (and full tracebacks)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.handler(args)
    except MindmirrorError as error:
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes from it", file=sys.stderr)
        return 130
    return int(result or 0)
