"""The distillation set: what the teacher said about each training example.

One JSON object per line (``mindmirror teach export`` writes it, ``mindmirror distill`` reads
it)::

    {"id": "svamp-17",                      # unique within the set
     "task": "svamp",                       # a task name (see student.tasks)
     "question": "Luke scored 84 points ...",  # the formatted question the student reads
     "label": "84 / 2",                     # normalized human label, or null
     "fields": {},                          # task extras (e.g. CQA choices), optional
     "teacher": "gpt-4o-mini",              # teacher model id, optional
     "cots": [                              # N chains of thought
       {"text": "<raw teacher output>",
        "rationale": "Luke scored 84 points after 2 rounds. ...",
        "answer": "84 / 2",                 # normalized pseudo-label; null = unparseable
        "self_evaluations": [               # M per CoT
          {"text": "<raw>", "rationale": "The given answer ...",
           "verdict": "correct"}            # correct | wrong | uncertain; null = unparseable
        ]}]}

Unparseable teacher outputs stay in the set with ``answer``/``verdict`` null, so they are
counted and visible; the training builders skip them.

Loaders also read the layouts of the public releases, so those can be trained on directly:
the distilling-step-by-step ``datasets/<task>/`` folders (one PaLM rationale per example) and
the Mind's Mirror ``svamp_tree1``/``svamp_tree2`` folders (5 CoTs x 5 self-evaluations).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindmirror.student.formats import Verdict, parse_self_evaluation, read_verdict
from mindmirror.student.jsonl import (
    DataFileError,
    iter_jsonl,
    read_json_records,
    write_jsonl_atomic,
)
from mindmirror.student.tasks import Example, Task, TaskDataError, get_task
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "DistillationRecord",
    "ParseStats",
    "SelfEvaluation",
    "TeacherCoT",
    "cot_from_text",
    "detect_layout",
    "fingerprint",
    "load_distillation_data",
    "load_dsbs",
    "load_minds_mirror",
    "load_task_examples",
    "parse_stats",
    "read_distillation_set",
    "self_evaluation_from_text",
    "task_name_of",
    "write_distillation_set",
]

#: The tasks of the public releases, told apart by their folder names (svamp, cqa, anli1).
_RELEASE_TASKS = ("svamp", "cqa", "anli")


class SelfEvaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    rationale: str
    verdict: Verdict | None = None


class TeacherCoT(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    rationale: str
    answer: str | None = None
    self_evaluations: list[SelfEvaluation] = Field(default_factory=list)


class DistillationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    task: str
    question: str
    label: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    teacher: str | None = None
    cots: list[TeacherCoT] = Field(default_factory=list)

    def example(self) -> Example:
        return Example(id=self.id, question=self.question, label=self.label, fields=self.fields)


# ----- parsing teacher text -----------------------------------------------------------------
def cot_from_text(task: Task, text: str, example: Example | None = None) -> TeacherCoT:
    """Parse one raw teacher chain of thought; ``answer`` is ``None`` if it has no valid answer."""
    rationale, answer = task.split_cot(text, example)
    return TeacherCoT(text=text, rationale=rationale, answer=answer)


def self_evaluation_from_text(text: str) -> SelfEvaluation:
    """Parse one raw teacher self-evaluation; ``verdict`` is ``None`` if it has none."""
    rationale, verdict = parse_self_evaluation(text)
    return SelfEvaluation(text=text, rationale=rationale, verdict=verdict)


# ----- our own JSONL ------------------------------------------------------------------------
def read_distillation_set(path: str | Path, task: Task | None = None) -> list[DistillationRecord]:
    """Read and validate a distillation JSONL; errors name the line and the field."""
    records: list[DistillationRecord] = []
    seen: dict[str, int] = {}
    for line_number, raw in iter_jsonl(path):
        try:
            record = DistillationRecord.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise DataFileError(
                f"{path}:{line_number}: not a distillation record: {problems}"
            ) from None
        if task is not None and record.task != task.name:
            raise DataFileError(
                f"{path}:{line_number}: record is for task {record.task!r}, expected {task.name!r}"
            )
        if record.id in seen:
            raise DataFileError(
                f"{path}:{line_number}: duplicate id {record.id!r} "
                f"(first on line {seen[record.id]})"
            )
        seen[record.id] = line_number
        records.append(record)
    if not records:
        raise DataFileError(f"{path}: no records")
    return records


def write_distillation_set(path: str | Path, records: Iterable[DistillationRecord]) -> int:
    return write_jsonl_atomic(
        path, (record.model_dump(mode="json", exclude_defaults=False) for record in records)
    )


def load_task_examples(task: Task, path: str | Path) -> list[Example]:
    """Read task data (JSONL, or a JSON array) into examples, naming the line of any problem."""
    examples = []
    for line_number, record in read_json_records(path):
        try:
            examples.append(task.example_from_record(record, line_number - 1))
        except TaskDataError as error:
            raise DataFileError(f"{path}:{line_number}: {error}") from None
    if not examples:
        raise DataFileError(f"{path}: no examples")
    return examples


def fingerprint(records: Sequence[DistillationRecord] | Sequence[Example]) -> str:
    """A short, order-sensitive sha256 of the data, recorded as provenance in bundles."""
    digest = hashlib.sha256()
    for record in records:
        if isinstance(record, DistillationRecord):
            payload: Any = record.model_dump(mode="json")
        else:
            payload = [record.id, record.question, record.label]
        digest.update(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ParseStats:
    """How much of the teacher output could be parsed, and how often the teacher was right."""

    examples: int
    cots: int
    cots_parsed: int
    cots_correct: int  # pseudo-label equals the human label (only where there is one)
    cots_with_label: int
    self_evaluations: int
    self_evaluations_parsed: int
    verdicts: dict[str, int]

    @property
    def cot_parse_rate(self) -> float:
        return self.cots_parsed / self.cots if self.cots else 0.0

    @property
    def teacher_accuracy(self) -> float | None:
        return self.cots_correct / self.cots_with_label if self.cots_with_label else None

    @property
    def self_evaluation_parse_rate(self) -> float | None:
        if not self.self_evaluations:
            return None
        return self.self_evaluations_parsed / self.self_evaluations


def parse_stats(task: Task, records: Sequence[DistillationRecord]) -> ParseStats:
    cots = parsed = correct = with_label = evals = evals_parsed = 0
    verdicts: Counter[str] = Counter()
    for record in records:
        for cot in record.cots:
            cots += 1
            parsed += cot.answer is not None
            if record.label is not None:
                with_label += 1
                correct += task.is_correct(cot.answer, record.label)
            for evaluation in cot.self_evaluations:
                evals += 1
                if evaluation.verdict is not None:
                    evals_parsed += 1
                    verdicts[evaluation.verdict.value] += 1
    return ParseStats(
        examples=len(records),
        cots=cots,
        cots_parsed=parsed,
        cots_correct=correct,
        cots_with_label=with_label,
        self_evaluations=evals,
        self_evaluations_parsed=evals_parsed,
        verdicts=dict(verdicts),
    )


# ----- public release layouts ---------------------------------------------------------------
def _release_task_name(folder: Path) -> str | None:
    name = folder.name.lower()
    return next((task for task in _RELEASE_TASKS if name.startswith(task)), None)


def _task_for_folder(folder: Path, task: Task | None) -> Task:
    if task is not None:
        return task
    name = _release_task_name(folder)
    if name is None:
        raise DataFileError(f"cannot tell the task of {folder}; pass it explicitly (--task)")
    return get_task(name)


def load_dsbs(
    folder: str | Path, split: str = "train", task: Task | None = None
) -> list[DistillationRecord]:
    """Read a distilling-step-by-step ``datasets/<name>/`` folder for one split.

    Inputs and labels come from ``<name>_<split>.json``; the rationales from
    ``llm/<split>_CoT_<k>.json`` (JSON arrays in split order, concatenated over k). Each
    example gets the one teacher CoT the release has, with no self-evaluations.
    """
    folder = Path(folder)
    task = _task_for_folder(folder, task)
    split_file = folder / f"{folder.name}_{split}.json"
    if not split_file.is_file():
        available = sorted(p.name for p in folder.glob(f"{folder.name}_*.json"))
        raise DataFileError(
            f"{split_file} not found: the release has no {split!r} inputs for {folder.name} "
            f"(available: {', '.join(available) or 'none'})"
        )
    examples = load_task_examples(task, split_file)
    completions: list[str] = []
    cot_files = sorted(
        (folder / "llm").glob(f"{split}_CoT_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
    )
    if not cot_files:
        raise DataFileError(f"no teacher rationales llm/{split}_CoT_*.json in {folder}")
    for cot_file in cot_files:
        data = json.loads(cot_file.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DataFileError(f"{cot_file}: expected a JSON array of completions")
        completions.extend(str(item) for item in data)
    if len(completions) != len(examples):
        raise DataFileError(
            f"{folder}: {len(examples)} {split} examples but {len(completions)} teacher "
            "completions; the files do not line up"
        )
    return [
        DistillationRecord(
            id=example.id,
            task=task.name,
            question=example.question,
            label=example.label,
            fields=example.fields,
            teacher="PaLM (distilling-step-by-step release)",
            cots=[cot_from_text(task, completion, example)],
        )
        for example, completion in zip(examples, completions, strict=True)
    ]


def _tree_question(step_x: str) -> str:
    """The tree log stores the question as a JSON fragment: ``"input":"..."``."""
    try:
        return str(json.loads("{" + step_x.strip().rstrip(",") + "}")["input"]).strip()
    except (json.JSONDecodeError, KeyError, TypeError):
        return step_x.strip()


def load_minds_mirror(
    folder: str | Path, split: str = "train", task: Task | None = None
) -> list[DistillationRecord]:
    """Read a Mind's Mirror ``svamp_tree1`` or ``svamp_tree2`` folder for one split.

    The Tree-of-Thoughts log ``llm/<split>_CoT_0.json`` holds, per question, the sampled CoTs
    (``new_ys``) and the self-evaluations of each (``value_outputs_list``). Human labels come
    from ``<name>_<split>.json`` when its rows are the questions (tree1); in tree2 that file is
    the flattened (CoT, verdict) list, which is checked against the log instead.
    """
    folder = Path(folder)
    task = task or get_task("svamp")
    log_files = sorted((folder / "llm").glob(f"{split}_CoT_*.json"))
    if not log_files:
        raise DataFileError(f"no Mind's Mirror log llm/{split}_CoT_*.json in {folder}")
    entries: list[dict[str, Any]] = []
    for log_file in log_files:
        data = json.loads(log_file.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(
            isinstance(e, dict) and "steps" in e for e in data
        ):
            raise DataFileError(f"{log_file}: not a Tree-of-Thoughts log (entries with 'steps')")
        entries.extend(data)

    labels: dict[str, str] = {}
    flat_verdicts: list[str] = []
    split_file = folder / f"{folder.name}_{split}.json"
    if split_file.is_file():
        for _, row in iter_jsonl(split_file):
            label = str(row.get("label", ""))
            verdict = read_verdict(label)
            if verdict is not None:
                flat_verdicts.append(verdict.value)
            elif "input" in row and row.get("label") is not None:
                labels[str(row["input"]).strip()] = task.normalize_label(label)

    records = []
    for position, entry in enumerate(entries):
        step = entry["steps"][0]
        question = _tree_question(step["x"])
        cots = []
        evaluations = step.get("value_outputs_list") or [[] for _ in step["new_ys"]]
        for cot_text, eval_texts in zip(step["new_ys"], evaluations, strict=True):
            cot = cot_from_text(task, cot_text)
            cot.self_evaluations = [self_evaluation_from_text(t) for t in eval_texts]
            cots.append(cot)
        records.append(
            DistillationRecord(
                id=f"{folder.name}-{split}-{entry.get('idx', position)}",
                task=task.name,
                question=question,
                label=labels.get(question),
                teacher="gpt-3.5-turbo (Mind's Mirror release)",
                cots=cots,
            )
        )
    if flat_verdicts:
        log_verdicts = [
            e.verdict.value if e.verdict else None
            for r in records
            for c in r.cots
            for e in c.self_evaluations
        ]
        if log_verdicts != flat_verdicts:
            raise DataFileError(
                f"{split_file} does not match the log: {len(flat_verdicts)} verdicts there, "
                f"{len(log_verdicts)} in the log, or in another order"
            )
    return records


def detect_layout(path: str | Path) -> str:
    """``"jsonl"`` (our distillation set), ``"dsbs"`` or ``"minds_mirror"``."""
    path = Path(path)
    if path.is_file():
        return "jsonl"
    if not path.is_dir():
        raise DataFileError(f"data not found: {path}")
    logs = list((path / "llm").glob("*_CoT_*.json"))
    if not logs:
        raise DataFileError(
            f"{path} is a folder but holds no llm/*_CoT_*.json teacher outputs; pass a "
            "distillation JSONL, a distilling-step-by-step folder or a Mind's Mirror folder"
        )
    with logs[0].open(encoding="utf-8") as handle:
        head = handle.read(200)
    return "minds_mirror" if '"steps"' in head else "dsbs"


def task_name_of(path: str | Path) -> str | None:
    """The task a data path says it is for, if it does: the ``task`` of a distillation JSONL's
    first record, or the name of a release folder (``svamp``, ``cqa``, ``anli1``)."""
    path = Path(path)
    if detect_layout(path) != "jsonl":
        return _release_task_name(path)
    for _, record in iter_jsonl(path):
        return str(record["task"]) if "task" in record else None
    return None


def load_distillation_data(
    path: str | Path, split: str = "train", task: Task | None = None
) -> list[DistillationRecord]:
    """Load any supported layout (see :func:`detect_layout`)."""
    layout = detect_layout(path)
    if layout == "jsonl":
        return read_distillation_set(path, task)
    if layout == "dsbs":
        return load_dsbs(path, split, task)
    return load_minds_mirror(path, split, task)
