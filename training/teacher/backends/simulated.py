"""``--teacher simulated``: the simulated teacher of :mod:`mindmirror.training.teacher.simulated` as
a teacher backend, so its output goes through the same store, runner, export and distillation set
as an LLM teacher's.

It is not a language model. It answers the ``arith`` task only, from each problem's gold
equation, which it reads from the request's ``example`` (the runner passes the example a
prompt was built from; the messages are still the real few-shot prompts and make the store
keys). The sampling parameters (temperature, max tokens, ``--seed``) are part of the keys as
for any teacher but do not change its texts; its own settings do, and they are all in its
``model_id``:

    mindmirror teach run --teacher simulated --task arith --data train.jsonl \\
        --teacher-option error_rate=0.25 --teacher-option verdict_agreement=0.8 ...

Options (``--teacher-option KEY=VALUE``): ``error_rate``, ``verdict_agreement``,
``uncertain_rate``, ``unparseable_rate`` (numbers in [0, 1]), ``error_kinds`` (comma-separated
subset of ``wrong_operation,dropped_number,swapped_number,arithmetic_slip``) and ``seed``.
"""

from __future__ import annotations

from typing import Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Task
from mindmirror.training.teacher.backends.base import (
    Completion,
    GenerationRequest,
    TeacherBackend,
    TeacherFatalError,
    TeacherOptions,
)
from mindmirror.training.teacher.simulated import (
    SimulatedTeacher,
    SimulatedTeacherConfig,
    SimulatedTeacherError,
)

__all__ = ["SimulatedBackend", "config_from_options"]

_FLOATS = ("error_rate", "verdict_agreement", "uncertain_rate", "unparseable_rate")
OPTION_NAMES = (*_FLOATS, "error_kinds", "seed")


def config_from_options(extra: dict[str, str]) -> SimulatedTeacherConfig:
    """The simulator's settings from ``--teacher-option KEY=VALUE`` pairs (defaults for the
    rest); a clear error for an unknown key or a bad value."""
    unknown = sorted(set(extra) - set(OPTION_NAMES))
    if unknown:
        raise MindmirrorError(
            f"unknown --teacher-option {', '.join(unknown)} for the simulated teacher; it takes "
            f"{', '.join(OPTION_NAMES)}"
        )
    values: dict[str, Any] = {}
    for name, text in extra.items():
        try:
            if name in _FLOATS:
                values[name] = float(text)
            elif name == "seed":
                values[name] = int(text)
            else:
                values[name] = tuple(kind.strip() for kind in text.split(",") if kind.strip())
        except ValueError:
            raise MindmirrorError(
                f"--teacher-option {name}={text!r}: expected "
                f"{'an integer' if name == 'seed' else 'a number'}"
            ) from None
    return SimulatedTeacherConfig(**values)


class SimulatedBackend(TeacherBackend):
    name = "simulated"
    supports_n = True
    #: it has no tokens: the runner counts an estimate and says so; the cost is 0 anyway
    reports_usage = False

    def __init__(self, config: SimulatedTeacherConfig | None = None) -> None:
        self.teacher = SimulatedTeacher(config)
        self.model_id = self.teacher.model_name

    @classmethod
    def from_options(cls, options: TeacherOptions) -> SimulatedBackend:
        if options.model is not None or options.base_url is not None:
            raise MindmirrorError(
                "the simulated teacher is a program, not a model: --model and --base-url do not "
                "apply (set its behaviour with --teacher-option, e.g. error_rate=0.25)"
            )
        return cls(config_from_options(options.extra))

    def check_task(self, task: Task) -> None:
        if task.name != "arith":
            raise SimulatedTeacherError(
                f"the simulated teacher answers only the arith task (it writes its chains of "
                f"thought from each problem's gold equation), not {task.name!r}; use an LLM "
                "teacher (--teacher openai or local) for other tasks"
            )

    def describe(self) -> str:
        return f"simulated teacher (no language model) {self.model_id}"

    async def generate(self, request: GenerationRequest) -> Completion:
        example = request.example
        if example is None:
            raise TeacherFatalError(
                "the simulated teacher needs the example a request is about "
                "(GenerationRequest.example); it cannot answer bare messages"
            )
        try:
            if request.kind == "cot":
                cots = self.teacher.cots(example, request.n, start=request.first_index)
                texts = [cot.text for cot in cots]
            else:
                if request.reasoning is None:
                    raise TeacherFatalError(
                        "a self-evaluation request without the reasoning it judges "
                        "(GenerationRequest.reasoning)"
                    )
                evaluations = self.teacher.self_evaluations(
                    example, request.reasoning, request.n, start=request.first_index
                )
                texts = [evaluation.text for evaluation in evaluations]
        except SimulatedTeacherError as error:
            # e.g. an example without a gold equation: no request of this data can succeed.
            raise TeacherFatalError(str(error)) from None
        return Completion(texts=texts, prompt_tokens=0, completion_tokens=0)
