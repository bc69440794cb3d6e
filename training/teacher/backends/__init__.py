"""Teacher backends, looked up by the ``--teacher`` name.

Each entry maps a name to ``"module:Class"`` so the CLI imports only the backend it uses (the
OpenAI path must not import torch; the local path must not need a network client). Adding a
teacher = writing one :class:`~mindmirror.training.teacher.backends.base.TeacherBackend` subclass
and adding one line here.
"""

from __future__ import annotations

import importlib

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher.backends.base import (
    Completion,
    GenerationRequest,
    RequestRejected,
    TeacherBackend,
    TeacherFatalError,
    TeacherOptions,
    TransientTeacherError,
)

__all__ = [
    "BACKENDS",
    "Completion",
    "GenerationRequest",
    "RequestRejected",
    "TeacherBackend",
    "TeacherFatalError",
    "TeacherOptions",
    "TransientTeacherError",
    "create_backend",
    "get_backend_class",
]

BACKENDS: dict[str, str] = {
    "openai": "mindmirror.training.teacher.backends.openai_backend:OpenAITeacher",
    "local": "mindmirror.training.teacher.backends.local:LocalTeacher",
    "simulated": "mindmirror.training.teacher.backends.simulated:SimulatedBackend",
}


def get_backend_class(name: str) -> type[TeacherBackend]:
    if name not in BACKENDS:
        raise MindmirrorError(
            f"unknown teacher {name!r}; available teachers: {', '.join(sorted(BACKENDS))}"
        )
    module_name, _, class_name = BACKENDS[name].partition(":")
    backend_class: type[TeacherBackend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class


def create_backend(name: str, options: TeacherOptions) -> TeacherBackend:
    return get_backend_class(name).from_options(options)
