"""What each data-cleaning rule of ``mindmirror distill`` leaves stage 2, on a simulated teacher.

No training: it builds stage 2's pairs with each label source and cleaning rule
(training/student/cleaning.py) from the simulated teacher's distillation set for ``arith``
problems, whose gold equations are known, and prints per rule how many pairs are left, how
many of their labels are wrong against the gold equation, how many pair a rationale with a
label its own chain did not reach, and how many questions are left without a pair.

    .venv/bin/python bench/cleaning_rules.py                        # N = 2, M = 1: the demo's
    .venv/bin/python bench/cleaning_rules.py --cots 5 --evals 5     # the paper's N and M

The simulated teacher's verdicts are independent draws (right with probability
``--verdict-agreement``), so votes over many of them are more reliable here than an LLM's
correlated verdicts would be: read the numbers as what each rule does, not what it gains on a
real teacher.
"""

from __future__ import annotations

import argparse
from typing import Any

from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.tasks import Task, get_task
from mindmirror.student.tasks.arith import generate_splits
from mindmirror.training.student.examples import TrainingPair, build_cot_pairs
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set

RULES: dict[str, dict[str, Any]] = {
    "teacher labels (the paper's)": {},
    "majority": {"label_source": "majority"},
    "weighted-majority": {"label_source": "weighted-majority"},
    "teacher + drop-judged-wrong": {"drop_judged_wrong": True},
    "majority + drop-disagreeing": {"label_source": "majority", "drop_disagreeing": True},
    "weighted-majority + drop-disagreeing": {
        "label_source": "weighted-majority",
        "drop_disagreeing": True,
    },
    "weighted-majority + both drops": {
        "label_source": "weighted-majority",
        "drop_disagreeing": True,
        "drop_judged_wrong": True,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--cots", type=int, default=2, help="N per problem")
    parser.add_argument("--evals", type=int, default=1, help="M per CoT")
    parser.add_argument("--error-rate", type=float, default=0.25)
    parser.add_argument("--verdict-agreement", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    task = get_task("arith")
    problems = generate_splits(args.seed, args.problems, 0, 0)["train"]
    teacher = SimulatedTeacherConfig(
        error_rate=args.error_rate, verdict_agreement=args.verdict_agreement, seed=args.seed
    )
    records = simulated_distillation_set(
        [problem.example() for problem in problems], args.cots, args.evals, teacher
    )
    cots = sum(len(record.cots) for record in records)
    print(
        f"{len(records)} arith problems, N = {args.cots}, M = {args.evals}, {cots} CoTs; teacher "
        f"error rate {args.error_rate}, verdict agreement {args.verdict_agreement}\n"
    )
    print(
        "| rule | pairs (share of CoTs) | labels wrong | rationale's own answer is not its "
        "label | questions without a pair |"
    )
    print("|---|---:|---:|---:|---:|")
    by_id = {record.id: record for record in records}
    for name, options in RULES.items():
        result = build_cot_pairs(records, task, **options)
        pairs, lost = result.pairs, result.questions_without_pairs
        wrong = sum(not task.is_correct(pair.label, by_id[pair.record_id].label) for pair in pairs)
        contradicted = sum(_contradicts(task, by_id[pair.record_id], pair) for pair in pairs)
        print(
            f"| {name} | {len(pairs)} ({100 * len(pairs) / cots:.1f}%) "
            f"| {100 * wrong / len(pairs):.1f}% | {100 * contradicted / len(pairs):.1f}% "
            f"| {lost} |"
        )


def _contradicts(task: Task, record: DistillationRecord, pair: TrainingPair) -> bool:
    """Whether the pair's rationale comes from a chain whose own answer is not the pair's label
    (the chain is found by its rationale: the question's first chain with that text)."""
    chain = next(cot for cot in record.cots if cot.rationale.strip() == pair.rationale)
    return not task.is_correct(chain.answer, pair.label)


if __name__ == "__main__":
    main()
