"""Between the store and distillation sets: export a run, import existing teacher outputs.

Export replays the run's plan (the same :class:`~mindmirror.training.teacher.prompts.Planner` the
runner used) and reads each slot by its key, so the JSONL lists examples in input order, CoTs by
sample index and self-evaluations by index under the CoT they judge, whatever order the calls
finished in. Raw teacher text is parsed here with the task's parser (``cot_from_text`` and
``self_evaluation_from_text`` from :mod:`mindmirror.student.distillation`): an unparseable answer is
kept with ``answer``/``verdict`` null, never guessed.

Import files existing teacher outputs (the distilling-step-by-step and Mind's Mirror
releases, or a distillation JSONL) under the keys an equivalent run would use, as an
``import`` run, so ``export`` writes them back as a distillation set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindmirror.student.distillation import (
    DistillationRecord,
    ParseStats,
    cot_from_text,
    parse_stats,
    self_evaluation_from_text,
    write_distillation_set,
)
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example, Task, get_task
from mindmirror.training.teacher.prompts import Planner, SamplingParams
from mindmirror.training.teacher.store import CallRecord, Result, Store

__all__ = [
    "ExportResult",
    "SetWritten",
    "export_run",
    "import_records",
    "planner_for_run",
    "write_run",
]


@dataclass
class ExportResult:
    records: list[DistillationRecord]
    run: dict[str, Any]
    cots_missing: int
    evals_missing: int

    @property
    def complete(self) -> bool:
        return self.cots_missing == 0 and self.evals_missing == 0


def planner_for_run(run: dict[str, Any], task: Task | None = None) -> Planner:
    config = run["config"]
    if task is None:
        task = get_task(config.get("task_source") or config["task"])
    if task.name != config["task"]:
        raise MindmirrorError(f"run {run['id']} is for task {config['task']!r}, not {task.name!r}")
    return Planner(
        task=task,
        model=config["teacher"],
        n_cots=config["n_cots"],
        n_evals=config["n_evals"],
        cot_params=SamplingParams(**config["cot_params"]),
        eval_params=SamplingParams(**config["eval_params"]),
        shots=config["shots"],
        evaluate_unparsed=config["evaluate_unparsed"],
    )


def export_run(store: Store, run_id: str | None = None, task: Task | None = None) -> ExportResult:
    """The distillation records of one run (the latest by default), in input order."""
    run = store.run(run_id)
    planner = planner_for_run(run, task)
    examples = store.examples(store.run_example_ids(run["id"]))
    imported = run["kind"] == "import"
    records = []
    cots_missing = evals_missing = 0
    for example in examples:
        slots = planner.cot_slots(example)
        rows = store.get_results([slot.key for slot in slots])
        cots = []
        for slot in slots:
            row = rows.get(slot.key)
            if row is None:
                cots_missing += not imported
                continue
            cot = cot_from_text(planner.task, row["text"], example)
            if planner.wants_evaluation(example, row["text"]):
                eval_slots = planner.eval_slots(example, slot.index, row["text"])
                eval_rows = store.get_results([s.key for s in eval_slots])
                for eval_slot in eval_slots:
                    eval_row = eval_rows.get(eval_slot.key)
                    if eval_row is None:
                        evals_missing += not imported
                        continue
                    cot.self_evaluations.append(self_evaluation_from_text(eval_row["text"]))
            cots.append(cot)
        records.append(
            DistillationRecord(
                id=example.id,
                task=planner.task.name,
                question=example.question,
                label=example.label,
                fields=example.fields,
                teacher=run["config"].get("teacher_name") or planner.model,
                cots=cots,
            )
        )
    return ExportResult(records, run, cots_missing, evals_missing)


@dataclass
class SetWritten:
    """A run's distillation set written to a file, and what it holds."""

    path: Path
    count: int
    stats: ParseStats
    cots_missing: int
    evals_missing: int

    def message(self) -> str:
        """What ``mindmirror teach`` prints about the file."""
        stats = self.stats
        accuracy = stats.teacher_accuracy
        return (
            f"wrote {self.count} records to {self.path}: {stats.cots} chains of thought "
            f"({stats.cots - stats.cots_parsed} unparseable, kept with answer null), "
            f"{stats.self_evaluations} self-evaluations "
            f"({stats.self_evaluations - stats.self_evaluations_parsed} without a verdict); "
            f"verdicts {stats.verdicts}"
            + (f"; teacher accuracy {accuracy:.1%}" if accuracy is not None else "")
        )


def write_run(
    store: Store, out: Path, run_id: str | None, task: Task, *, partial: bool = False
) -> SetWritten:
    """Export a run (the latest when ``run_id`` is None) to the distillation JSONL ``out``.

    An unfinished run is refused unless ``partial``: a set with holes would train a student on
    whichever answers happened to arrive first."""
    result = export_run(store, run_id, task)
    if not result.complete and not partial:
        raise MindmirrorError(
            f"run {result.run['id']} is not finished: {result.cots_missing} chains of thought "
            f"and {result.evals_missing} self-evaluations are missing. Rerun `mindmirror teach "
            "run` to finish it, or pass --partial to export what is there"
        )
    count = write_distillation_set(out, result.records)
    return SetWritten(
        out, count, parse_stats(task, result.records), result.cots_missing, result.evals_missing
    )


def import_records(
    store: Store,
    records: Sequence[DistillationRecord],
    task: Task,
    source: str,
) -> tuple[str, int, int]:
    """File existing teacher outputs in the store as an ``import`` run.

    Returns (run id, CoTs imported, self-evaluations imported). Each record's CoTs take sample
    indices 0..k-1 and each CoT's self-evaluations 0..j-1, under the record's teacher name as
    the model, so imported answers can never be mistaken for a real teacher's.
    """
    if not records:
        raise MindmirrorError(f"{source}: nothing to import")
    teachers = {record.teacher or "imported" for record in records}
    if len(teachers) != 1:
        raise MindmirrorError(f"{source}: records name several teachers {sorted(teachers)}")
    teacher = teachers.pop()
    for record in records:
        if record.task != task.name:
            raise MindmirrorError(f"{source}: record {record.id} is for task {record.task!r}")
    store.bind_task(task.name)
    examples = [record.example() for record in records]
    store.add_examples(examples)
    n_cots = max(1, *(len(record.cots) for record in records))
    n_evals = max(0, *(len(cot.self_evaluations) for record in records for cot in record.cots), 0)
    planner = Planner(
        task=task,
        model=f"import:{teacher}",
        n_cots=n_cots,
        n_evals=n_evals,
        cot_params=SamplingParams(),
        eval_params=SamplingParams(),
        shots=None,
        # Imported self-evaluations are kept whatever the CoT they judge looks like.
        evaluate_unparsed=True,
    )
    config = {**planner.config(), "teacher_name": teacher, "imported_from": source}
    run_id = store.register_run("import", config, [example.id for example in examples])
    cot_count = eval_count = 0
    for record, example in zip(records, examples, strict=True):
        results = _import_results(planner, record, example)
        cot_count += sum(result.kind == "cot" for result in results)
        eval_count += sum(result.kind == "self_eval" for result in results)
        store.record_call(
            run_id,
            CallRecord(
                kind="import",
                outcome="ok",
                model=planner.model,
                samples_requested=len(results),
                samples_returned=len(results),
                source="import",
            ),
            results,
        )
    return run_id, cot_count, eval_count


def _import_results(planner: Planner, record: DistillationRecord, example: Example) -> list[Result]:
    results = []
    slots = planner.cot_slots(example)
    for slot, cot in zip(slots, record.cots, strict=False):
        results.append(
            Result(
                key=slot.key,
                kind="cot",
                example_id=example.id,
                sample_index=slot.index,
                model=planner.model,
                text=cot.text,
                source="import",
            )
        )
        eval_slots = planner.eval_slots(example, slot.index, cot.text)
        for eval_slot, evaluation in zip(eval_slots, cot.self_evaluations, strict=False):
            results.append(
                Result(
                    key=eval_slot.key,
                    kind="self_eval",
                    example_id=example.id,
                    sample_index=eval_slot.index,
                    model=planner.model,
                    text=evaluation.text,
                    parent=slot.key,
                    source="import",
                )
            )
    return results
