"""Tasks described by a YAML or JSON file instead of code, for simple classification and QA.

A spec names the task, its labels (classification) or none (free-text QA), how to build the
question from a record's fields, and the few-shot exemplars the teacher uses::

    name: sentiment
    description: Movie review polarity.
    labels: [positive, negative]          # omit for free-text QA
    input_template: "Review: {text}"      # optional; default reads the record's "input"
    label_field: label                    # optional; default "label"
    cot_exemplars:
      - question: "Review: A joy."
        answer: "The review praises the film. So the answer is positive."
    self_eval_exemplars:
      - question: "Review: A joy."
        reasoning: "The review praises the film. So the answer is positive."
        evaluation: "Praise means positive. Evaluation result: the given answer is correct."
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from mindmirror.student.tasks.base import (
    NO_CHECK,
    CoTExemplar,
    Example,
    RationaleCheck,
    SelfEvalExemplar,
    Task,
    TaskDataError,
    check_choice,
    normalize_text,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["SpecTask", "TaskSpec", "load_task_spec"]


class _CoTExemplarSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    answer: str


class _SelfEvalExemplarSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    reasoning: str
    evaluation: str


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    description: str = ""
    labels: list[str] | None = None
    input_template: str | None = None
    label_field: str = "label"
    id_field: str = "id"
    instruction: str | None = None
    cot_exemplars: list[_CoTExemplarSpec] = Field(default_factory=list)
    self_eval_exemplars: list[_SelfEvalExemplarSpec] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, labels: list[str] | None) -> list[str] | None:
        if labels is None:
            return None
        normalized = [normalize_text(label) for label in labels]
        if len(set(normalized)) != len(normalized) or not all(normalized):
            raise ValueError("labels must be distinct and non-empty")
        return normalized


class SpecTask(Task):
    """A :class:`Task` whose behaviour comes from a :class:`TaskSpec`."""

    answer_cue = re.compile(r"(?:So )?[Tt]he answer is")

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        # Instance attributes shadow the ClassVar defaults of Task on purpose: each spec is
        # its own task.
        self.name = spec.name  # type: ignore[misc]
        self.description = spec.description  # type: ignore[misc]
        self.label_space = tuple(spec.labels) if spec.labels else None  # type: ignore[misc]
        if spec.instruction:
            self.teacher_instruction = spec.instruction  # type: ignore[misc]
        self.cot_exemplars = tuple(  # type: ignore[misc]
            CoTExemplar(e.question, e.answer) for e in spec.cot_exemplars
        )
        self.self_eval_exemplars = tuple(  # type: ignore[misc]
            SelfEvalExemplar(e.question, e.reasoning, e.evaluation)
            for e in spec.self_eval_exemplars
        )

    def example_from_record(self, record: dict[str, Any], index: int) -> Example:
        if self.spec.input_template is None:
            return super().example_from_record(
                {**record, "label": record.get(self.spec.label_field)}, index
            )
        try:
            question = self.spec.input_template.format(**record)
        except KeyError as error:
            raise TaskDataError(
                f"input_template needs field {error.args[0]!r}, record has {sorted(record)}"
            ) from None
        label = record.get(self.spec.label_field)
        return Example(
            id=str(record.get(self.spec.id_field, index)),
            question=question.strip(),
            label=None if label is None else self.normalize_label(str(label)),
            fields={},
        )

    def normalize_label(self, label: str) -> str:
        text = normalize_text(label)
        if not text:
            raise TaskDataError("empty label")
        if self.label_space is not None and text not in self.label_space:
            raise TaskDataError(
                f"label {label!r} is not one of {', '.join(self.label_space)} (task {self.name})"
            )
        return text

    def parse_label(self, answer_text: str, example: Example | None = None) -> str | None:
        text = normalize_text(answer_text.split("\n")[0])
        if not text:
            return None
        if self.label_space is None:
            return text
        if text in self.label_space:
            return text
        found = [label for label in self.label_space if re.search(rf"\b{re.escape(label)}\b", text)]
        return found[0] if len(found) == 1 else None

    def answer_sentence(self, label: str, example: Example | None = None) -> str:
        return f"So the answer is {label}."

    def check_rationale(
        self, rationale: str, label: str | None, example: Example | None = None
    ) -> RationaleCheck:
        """A classification spec checks as CQA does, its labels being the choices; free-text QA
        has no check (any text may be an answer)."""
        if self.label_space is None:
            return NO_CHECK
        return check_choice(rationale, label, list(self.label_space))


def load_task_spec(path: str | Path) -> SpecTask:
    """Read a task spec file (``.yaml``, ``.yml`` or ``.json``) into a task."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TaskDataError(f"cannot read task spec {path}: {error.strerror}") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise TaskDataError(f"task spec {path} is not valid {path.suffix[1:]}: {error}") from None
    if not isinstance(raw, dict):
        raise TaskDataError(f"task spec {path} must be a mapping")
    try:
        return SpecTask(TaskSpec.model_validate(raw))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
        )
        raise TaskDataError(f"task spec {path} is invalid: {problems}") from None
