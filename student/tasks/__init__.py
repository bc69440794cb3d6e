"""Task registry.

Built-in tasks are the modules of this package; a user adds a task by dropping one more module
here that defines a :class:`~mindmirror.student.tasks.base.Task` subclass, or by passing the path of
a YAML/JSON task spec (see :mod:`mindmirror.student.tasks.spec`) wherever a task name is accepted.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache
from pathlib import Path

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks.base import (
    CoTExemplar,
    Example,
    SelfEvalExemplar,
    Task,
    TaskDataError,
)

__all__ = [
    "CoTExemplar",
    "Example",
    "SelfEvalExemplar",
    "Task",
    "TaskDataError",
    "UnknownTaskError",
    "available_tasks",
    "get_task",
]

_NOT_TASK_MODULES = {"base", "spec"}


class UnknownTaskError(MindmirrorError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@cache
def _builtin_tasks() -> dict[str, type[Task]]:
    tasks: dict[str, type[Task]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _NOT_TASK_MODULES or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, Task)
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
            ):
                tasks[obj.name] = obj
    return tasks


def available_tasks() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(_builtin_tasks())


def get_task(name_or_spec: str | Path) -> Task:
    """A task by registry name, or from a ``.yaml``/``.yml``/``.json`` task spec path."""
    text = str(name_or_spec)
    if text.endswith((".yaml", ".yml", ".json")):
        from mindmirror.student.tasks.spec import load_task_spec

        return load_task_spec(text)
    tasks = _builtin_tasks()
    if text not in tasks:
        raise UnknownTaskError(
            f"unknown task {text!r}; built-in tasks are {', '.join(sorted(tasks))}, "
            "or pass the path of a YAML/JSON task spec"
        )
    return tasks[text]()
