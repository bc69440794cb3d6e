"""The teacher backend interface: one small class per kind of teacher.

A backend turns one :class:`GenerationRequest` (chat messages, sampling parameters, how many
samples) into a :class:`Completion` (the texts and the tokens used). Everything else (store,
planning, retries, rate limits, cost budget, progress, export) is shared and lives outside the
backend, so a new teacher is one class:

.. code-block:: python

    class EchoTeacher(TeacherBackend):
        name = "echo"

        @classmethod
        def from_options(cls, options: TeacherOptions) -> "EchoTeacher":
            return cls(model_id=f"echo:{options.model or 'default'}")

        async def generate(self, request: GenerationRequest) -> Completion:
            text = request.messages[-1]["content"]
            return Completion(texts=[text] * request.n, prompt_tokens=0, completion_tokens=0)

and one line in :data:`mindmirror.training.teacher.backends.BACKENDS`. Errors are reported with the
three exception classes below so the runner's retry policy is the same for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example, Task
from mindmirror.training.teacher.prompts import Kind, Message, SamplingParams

__all__ = [
    "Completion",
    "GenerationRequest",
    "RequestRejected",
    "TeacherBackend",
    "TeacherFatalError",
    "TeacherOptions",
    "TransientTeacherError",
]


@dataclass(frozen=True)
class GenerationRequest:
    """``n`` samples for one prompt. ``first_index`` is the sample index of the first slot,
    used to derive a per-request seed (``params.request_seed``).

    ``kind``, ``example`` and ``reasoning`` say what the messages were built from: a chain of
    thought for ``example``, or a self-evaluation of ``reasoning`` (the chain of thought as it
    appears in the prompt). A teacher that does not read prompts uses them (the simulated
    teacher answers from the example's gold label). A language-model backend must answer from
    ``messages`` alone: ``example.label`` is the answer the teacher is meant to find, and it is
    not part of the store key.
    """

    messages: Sequence[Message]
    params: SamplingParams
    n: int = 1
    first_index: int = 0
    kind: Kind = "cot"
    example: Example | None = None
    reasoning: str | None = None


@dataclass
class Completion:
    """What the teacher returned. ``texts`` may hold fewer than ``n`` samples (an endpoint that
    ignores ``n``); the runner asks again for the rest. ``finish_reasons`` aligns with
    ``texts`` (``"stop"``, ``"length"``...), or is empty when unknown."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: list[str | None] = field(default_factory=list)


@dataclass
class TeacherOptions:
    """Everything the CLI knows about the teacher; each backend reads what it needs.

    ``extra`` holds ``--teacher-option KEY=VALUE`` pairs for backend-specific settings.
    """

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    n_mode: str = "auto"  # auto | on | off
    max_tokens_param: str | None = None  # max_tokens | max_completion_tokens
    device: str = "cpu"
    threads: int | None = None
    #: --dry-run: nothing will be sent, so no key is needed yet
    dry_run: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class TransientTeacherError(Exception):
    """The call failed in a way worth retrying (429, 5xx, timeout, connection). ``retry_after``
    is the server's requested wait in seconds, when it sent one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RequestRejected(Exception):
    """This request cannot succeed as sent (400, 422...): record it, go on with the others."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TeacherFatalError(MindmirrorError):
    """No request can succeed (bad key, unknown model, quota exhausted): stop the run."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TeacherBackend(ABC):
    """One kind of teacher. Subclasses set ``name`` and implement ``from_options`` and
    ``generate``; the rest has defaults."""

    #: the ``--teacher`` value that selects this backend
    name: ClassVar[str]
    #: whether :mod:`mindmirror.training.teacher.batch` can drive it (needs an OpenAI client)
    supports_batch: ClassVar[bool] = False

    #: the model identity that goes into every store key (change it, and nothing is reused)
    model_id: str
    #: hard cap on requests in flight (a local model runs one at a time); None = --concurrency
    max_concurrency: int | None = None
    #: whether one request can return several samples: True, False, or None = find out
    supports_n: bool | None = None
    #: whether ``Completion`` token counts are real (False: estimated, shown as such)
    reports_usage: bool = True

    @classmethod
    @abstractmethod
    def from_options(cls, options: TeacherOptions) -> TeacherBackend:
        """Build the backend from the CLI options; must not load a model or make a call
        (``--dry-run`` builds the backend only to know its ``model_id``)."""

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> Completion:
        """Sample ``request.n`` completions (or fewer, see :class:`Completion`).

        Raise :class:`TransientTeacherError`, :class:`RequestRejected` or
        :class:`TeacherFatalError`; anything else is treated as a bug and stops the run.
        """

    def check_task(self, task: Task) -> None:  # noqa: B027 - optional hook
        """Raise a :class:`~mindmirror.student.errors.MindmirrorError` if this teacher cannot answer
        ``task`` (``teach()`` calls it once, before anything is planned or sent, dry runs
        included). Language models answer any task; a simulator knows only its own."""

    def describe(self) -> str:
        return f"{self.name} teacher {self.model_id}"

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or models."""
