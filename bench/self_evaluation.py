"""Can the served student's reasoning be trusted? Verdicts, explanations and self-consistency.

On a bundle and a labelled split, through the service's own inference layer and backend (in
this process, no HTTP: :mod:`mindmirror.trust`):

- makes reasonings of known truth: for arith and SVAMP-style tasks the simulated teacher writes
  ``--per-question`` chains of thought per question with a seed of its own, about half of them
  wrong (``--error-rate``); for other tasks the teacher chains of thought in the data (a
  distillation set) are judged by the labels;
- prints the student's verdict AUROC and the balanced accuracy of its calibrated verdict against
  that truth (and how often greedy decoding writes "correct"), the share of ``/v1/explain``
  answers consistent by the task's check, the share of rationale steps that are arithmetically
  right, and greedy vs self-consistency accuracy.

    .venv/bin/python bench/self_evaluation.py runs/demo/student runs/demo/data/test.jsonl
    .venv/bin/python bench/self_evaluation.py BUNDLE DATA --limit 100 --num-samples 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mindmirror.service.runtime import StudentModel
from mindmirror.service.settings import Settings

from mindmirror.trust import Reasoning, measure_trust, reasonings_from_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path, help="labelled split (task JSONL or distillation set)")
    parser.add_argument("--split", default="test", help="split of a distillation-set folder")
    parser.add_argument("--limit", type=int, default=None, help="questions to use (default: all)")
    parser.add_argument("--per-question", type=int, default=2, help="reasonings per question")
    parser.add_argument("--error-rate", type=float, default=0.5)
    parser.add_argument("--num-samples", type=int, default=5, help="self-consistency samples")
    parser.add_argument("--backend", default="auto", help="auto, onnx, pytorch, ctranslate2")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()

    os.environ.setdefault("MINDMIRROR_LOG_LEVEL", "warning")
    settings = Settings(bundle=args.bundle, backend=args.backend, num_threads=args.threads)
    model = StudentModel.open(settings)
    task = model.task
    examples, reasonings = _data(task, args)
    started = time.perf_counter()
    report = measure_trust(model, examples, reasonings, num_samples=args.num_samples)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({**report.to_dict(), "seconds": round(seconds, 1)}, indent=2))
        return
    backend = model.backend
    print(f"bundle {args.bundle} on {backend.name}/{backend.variant} ({backend.device})")
    print(
        f"{report.questions} questions, {report.reasonings} reasonings of known truth "
        f"({report.right_reasonings} right), {seconds:.0f} s\n"
    )
    rows = [
        ("verdict AUROC (score vs truth)", report.verdict_auroc),
        (
            f"verdict balanced accuracy (threshold {report.threshold:.3f})",
            report.verdict_balanced_accuracy,
        ),
        ("greedy verdict writes 'correct'", report.generated_correct_share),
        (f"explain consistent ({report.explain_checked} checked)", report.explain_consistent),
        (f"rationale steps right ({report.steps} steps)", report.step_accuracy),
        ("accuracy, greedy predict", report.greedy_accuracy),
        ("accuracy, explain (1 sample)", report.explain_accuracy),
        (
            f"accuracy, self-consistency ({report.num_samples} samples)",
            report.self_consistency_accuracy,
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        shown = "n/a" if value is None else f"{value:.4f}"
        print(f"{name:<{width}}  {shown:>7}")


def _data(task, args) -> tuple[list, list[Reasoning]]:
    from mindmirror.training.student.evaluate import load_evaluation_data

    examples, records = load_evaluation_data(task, args.data, args.split)
    examples = [e for e in examples if e.label is not None][: args.limit]
    if task.name in ("arith", "svamp"):
        from mindmirror.training.teacher.simulated import reasonings_of_known_truth

        made = reasonings_of_known_truth(examples, args.per_question, error_rate=args.error_rate)
        return examples, [Reasoning(e, text, right) for e, text, right in made]
    if records is None:
        raise SystemExit(
            f"{args.data}: {task.name} needs reasonings of known truth: give a distillation set "
            "(teacher chains of thought judged by the labels)"
        )
    kept = {e.id for e in examples}
    return examples, reasonings_from_records(task, [r for r in records if r.id in kept])


if __name__ == "__main__":
    main()
