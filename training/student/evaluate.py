"""``mindmirror evaluate``: a bundle's accuracy on labelled data, written into its manifest.

Data may be plain task data (JSONL or JSON array: ``{"input", "label"}`` or the task's native
fields), a distillation set JSONL, or a release folder (distilling-step-by-step / Mind's
Mirror, with ``--split``). The student answers every question with ``predict:`` (batched
greedy decoding); its answer is read with the task's parser and judged with the task's
correctness rule (SVAMP: equations compared by value).

Reported:

- accuracy, and the share of answers that parse as a label at all (``valid_rate``);
- per-class precision/recall/F1 when the task has a closed label space (ANLI). CQA's answers
  are each question's own choice texts, so per-answer numbers mean nothing; instead its
  classes are the answer *positions* (a-e), which shows a position bias if there is one;
- when the data carries teacher self-evaluations and the student was trained with stage 1,
  the agreement of the student's verdicts with the teacher's, with per-verdict numbers.

Each result is recorded in the bundle's ``mindmirror.json`` (``evaluations``; a result for the
same data, target and runtime is replaced) and the manifest is rewritten with fresh
checksums.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindmirror.student.bundle import (
    BundleError,
    EvaluationResult,
    compute_checksums,
    load_manifest,
    write_manifest,
)
from mindmirror.student.distillation import (
    DistillationRecord,
    detect_layout,
    fingerprint,
    load_distillation_data,
    load_task_examples,
)
from mindmirror.student.formats import Verdict
from mindmirror.student.jsonl import DataFileError, read_json_records
from mindmirror.student.tasks import Example, Task, get_task
from mindmirror.student.tasks.base import normalize_text
from mindmirror.student.tasks.cqa import LETTERS, choices_of
from mindmirror.training.student.verdicts import TruthReport

__all__ = ["EvaluationReport", "evaluate_bundle", "load_evaluation_data", "per_class_scores"]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationReport:
    task: str
    split: str
    examples: int
    task_result: EvaluationResult
    verdict_result: EvaluationResult | None = None
    #: the student's scored verdicts on the data's teacher chains of thought, against the truth
    truth: TruthReport | None = None
    unlabelled_skipped: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list)


def per_class_scores(
    gold: Sequence[str | None], predicted: Sequence[str | None], classes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class (an unparseable prediction counts as no
    class: a miss for its gold class and a false positive for none)."""
    scores = {}
    for name in classes:
        tp = sum(g == name and p == name for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != name and p == name for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == name and p != name for g, p in zip(gold, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": float(tp + fn),
        }
    return scores


def _position(label: str | None, example: Example) -> str | None:
    if label is None:
        return None
    choices = [normalize_text(choice) for choice in choices_of(example)]
    return f"({LETTERS[choices.index(label)]})" if label in choices else None


def load_evaluation_data(
    task: Task, path: str | Path, split: str = "test"
) -> tuple[list[Example], list[DistillationRecord] | None]:
    """Examples to score, plus the distillation records when the data has teacher outputs."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data not found: {path}")
    if path.is_dir() or detect_layout(path) != "jsonl":
        records = load_distillation_data(path, split, task)
        return [r.example() for r in records], records
    rows = read_json_records(path)
    if not rows:
        raise DataFileError(f"{path}: no records")
    first = rows[0][1]
    if "cots" in first and "question" in first:
        records = load_distillation_data(path, split, task)
        return [r.example() for r in records], records
    return load_task_examples(task, path), None


def _result(
    split: str,
    data_fp: str,
    correct: int,
    valid: int,
    total: int,
    per_class: dict[str, dict[str, float]] | None,
    target: str,
) -> EvaluationResult:
    return EvaluationResult(
        split=split,
        data_fingerprint=data_fp,
        examples=total,
        accuracy=round(correct / total, 4) if total else 0.0,
        valid_rate=round(valid / total, 4) if total else 0.0,
        per_class=per_class,
        runtime="pytorch",
        target=target,
    )


def evaluate_bundle(
    bundle: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    split_name: str | None = None,
    batch_size: int = 32,
    device: str | None = None,
    limit: int | None = None,
    write: bool = True,
    progress: bool = True,
    keep_predictions: bool = False,
) -> EvaluationReport:
    """Score the bundle's student on ``data`` and (by default) record it in the manifest."""
    from mindmirror.training.student.bundle_io import load_student
    from mindmirror.training.student.generation import default_device, generate_texts

    bundle = Path(bundle)
    # The task first, to read (and reject bad) data before a large model is loaded;
    # load_student below verifies every checksum before the weights are read.
    task = get_task(load_manifest(bundle, verify=False).task)
    examples, records = load_evaluation_data(task, data, split)
    if limit is not None:
        examples = examples[:limit]
        records = records[:limit] if records is not None else None
    labelled = [example for example in examples if example.label is not None]
    if not labelled:
        raise DataFileError(f"{data}: no example has a label; nothing to score")
    name = split_name or (f"{Path(data).name}:{split}" if Path(data).is_dir() else Path(data).stem)

    model, tokenizer, manifest = load_student(bundle, device or default_device())
    prefixes = manifest.prefixes
    common = {
        "max_input_length": manifest.max_input_length,
        "batch_size": batch_size,
        "progress": progress,
        "num_beams": manifest.generation.num_beams,
    }
    texts = generate_texts(
        model,
        tokenizer,
        [prefixes.cot_input(example.question, "predict") for example in labelled],
        max_new_tokens=manifest.generation.max_new_tokens_predict,
        desc="answering",
        **common,
    )
    parsed = [task.read_label(text, example) for text, example in zip(texts, labelled, strict=True)]
    correct = sum(
        task.is_correct(answer, example.label)
        for answer, example in zip(parsed, labelled, strict=True)
    )
    valid = sum(answer is not None for answer in parsed)
    per_class = None
    if task.label_space:
        per_class = per_class_scores([e.label for e in labelled], parsed, task.label_space)
    elif task.name == "cqa":
        per_class = per_class_scores(
            [_position(e.label, e) for e in labelled],
            [_position(p, e) for p, e in zip(parsed, labelled, strict=True)],
            [f"({letter})" for letter in LETTERS],
        )
    data_fp = fingerprint(labelled)
    report = EvaluationReport(
        task=task.name,
        split=name,
        examples=len(labelled),
        task_result=_result(name, data_fp, correct, valid, len(labelled), per_class, "task"),
        unlabelled_skipped=len(examples) - len(labelled),
    )
    if keep_predictions:
        report.predictions = [
            {
                "id": e.id,
                "output": t,
                "answer": p,
                "label": e.label,
                "correct": task.is_correct(p, e.label),
            }
            for e, t, p in zip(labelled, texts, parsed, strict=True)
        ]

    if records is not None and manifest.self_evaluation:
        report.verdict_result = _verdict_result(
            task, records, model, tokenizer, manifest, name, common
        )
        report.truth = _truth_report(
            task, records, model, tokenizer, manifest, batch_size, progress
        )
    if write:
        results = [
            previous
            for previous in manifest.evaluations
            if not any(
                (previous.split, previous.data_fingerprint, previous.target, previous.runtime)
                == (new.split, new.data_fingerprint, new.target, new.runtime)
                for new in (report.task_result, report.verdict_result)
                if new is not None
            )
        ]
        results.append(report.task_result)
        if report.verdict_result is not None:
            results.append(report.verdict_result)
        # Rewriting the manifest re-hashes every file: make sure that does not bless a file
        # that changed since it was verified at load.
        if compute_checksums(bundle) != manifest.files:
            raise BundleError(
                f"{bundle} changed while it was being evaluated; the result was not recorded"
            )
        write_manifest(bundle, manifest.model_copy(update={"evaluations": results}))
    return report


def _verdict_result(
    task: Task,
    records: Sequence[DistillationRecord],
    model: Any,
    tokenizer: Any,
    manifest: Any,
    name: str,
    common: dict[str, Any],
) -> EvaluationResult | None:
    """The student's verdicts on every teacher self-evaluation in the data, against the
    teacher's (the held-out verdict metric of :mod:`~mindmirror.training.student.verdicts`)."""
    from mindmirror.training.student.verdicts import measure_verdicts, teacher_verdicts

    cases = teacher_verdicts(records, task, manifest.prefixes)
    if not cases:
        return None
    agreement = measure_verdicts(
        model,
        tokenizer,
        cases,
        max_new_tokens=manifest.generation.max_new_tokens_predict,
        desc="self-evaluating",
        **common,
    )
    digest = fingerprint(
        [Example(id=str(i), question=s, label=v) for i, (s, v) in enumerate(cases)]
    )
    per_class = per_class_scores(
        agreement.teacher, agreement.student, [verdict.value for verdict in Verdict]
    )
    return _result(
        name,
        digest,
        agreement.agreeing,
        agreement.readable,
        agreement.total,
        per_class,
        "self_evaluation",
    )


def _truth_report(
    task: Task,
    records: Sequence[DistillationRecord],
    model: Any,
    tokenizer: Any,
    manifest: Any,
    batch_size: int,
    progress: bool,
) -> TruthReport | None:
    """The scored verdicts (with the bundle's calibration) on every teacher chain of thought in
    the data, right or wrong by the human labels (else the teacher's majority verdict)."""
    from mindmirror.training.student.verdicts import score_cases, truth_cases

    cases, source = truth_cases(records, task, manifest.prefixes)
    if not cases:
        return None
    return score_cases(
        model,
        tokenizer,
        cases,
        source,
        manifest.verdict_calibration,
        max_input_length=manifest.max_input_length,
        batch_size=batch_size,
        progress=progress,
    )


def _truth_table(report: EvaluationReport) -> Any:
    from rich.table import Table

    truth = report.truth
    assert truth is not None
    table = Table(
        title=f"{report.task} · {report.split} · scored self-evaluation vs truth ({truth.source})",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    table.add_row(
        "reasonings (right / wrong)", f"{truth.right} / {len(truth.truths) - truth.right}"
    )
    table.add_row("AUROC of the verdict margin", shown(truth.auroc))
    table.add_row(
        f"balanced accuracy at threshold {truth.threshold:.3f}", shown(truth.balanced_accuracy)
    )
    table.add_row("expected calibration error", shown(truth.calibration_error))
    return table


def render_report(report: EvaluationReport) -> Any:
    """A rich renderable: one table per target."""
    from rich.console import Group
    from rich.table import Table

    tables = []
    for title, result in (
        (f"{report.task} · {report.split} · task answers", report.task_result),
        (
            f"{report.task} · {report.split} · self-evaluation verdicts vs teacher",
            report.verdict_result,
        ),
    ):
        if result is None:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("class")
        for column in ("precision", "recall", "F1", "support"):
            table.add_column(column, justify="right")
        for name, scores in (result.per_class or {}).items():
            table.add_row(
                name,
                f"{scores['precision']:.3f}",
                f"{scores['recall']:.3f}",
                f"{scores['f1']:.3f}",
                f"{int(scores['support'])}",
            )
        table.add_section()
        table.add_row(
            "[b]accuracy[/b]", "", "", f"[b]{result.accuracy:.4f}[/b]", str(result.examples)
        )
        table.add_row("valid answers", "", "", f"{result.valid_rate:.4f}", "")
        tables.append(table)
    if report.truth is not None:
        tables.append(_truth_table(report))
    return Group(*tables)
