"""Does stage 2 erase stage 1? Verdict and task accuracy vs the stage-1 replay fraction.

The service's ``/v1/evaluate`` uses the final student, so what stage 1 taught must survive
stage 2. This trains stage 1 once per seed on a simulated teacher's data, then stage 2 from
those same weights with several replay fractions (the share of stage-1 pairs mixed into stage
2), and measures on held-out questions:

- verdict agreement with the teacher's self-evaluations (after stage 1, and final);
- task accuracy of the final student.

    .venv/bin/python bench/replay_forgetting.py            # 4 fractions x 2 seeds
    .venv/bin/python bench/replay_forgetting.py --quick    # 2 fractions x 1 seed, fewer steps

The default ``--replay-fraction`` of ``mindmirror distill`` comes from this measurement (see
docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from mindmirror.student.distillation import write_distillation_set
from mindmirror.student.tasks.arith import generate_splits
from mindmirror.training.student.distill import DistillConfig, distill
from mindmirror.training.student.evaluate import evaluate_bundle
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fractions", default="0,0.1,0.25,0.5")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--student", default="scratch:micro")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per stage")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.fractions, args.seeds, args.steps = "0,0.25", "0", 60
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    rows: dict[float, list[dict[str, float]]] = {f: [] for f in fractions}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train, test = tmp / "train.jsonl", tmp / "test.jsonl"
        # One-step arith problems: a micro student learns them within the bench's steps.
        splits = generate_splits(0, train=240, validation=0, test=80, two_step_fraction=0.0)
        teacher = SimulatedTeacherConfig(unparseable_rate=0.05)
        for path, split in ((train, "train"), (test, "test")):
            examples = [problem.example() for problem in splits[split]]
            write_distillation_set(path, simulated_distillation_set(examples, 3, 2, teacher))
        for seed in seeds:
            first_work: Path | None = None
            for fraction in fractions:
                out = tmp / f"seed{seed}-replay{fraction}"
                work = tmp / f"work-seed{seed}-replay{fraction}"
                if first_work is not None:
                    # Stage 1 does not depend on the replay fraction: reuse its weights and
                    # tokenizer so that only stage 2 differs between the rows.
                    work.mkdir()
                    shutil.copytree(first_work / "tokenizer", work / "tokenizer")
                    shutil.copytree(
                        first_work / "stage1-self-evaluation", work / "stage1-self-evaluation"
                    )
                config = DistillConfig(
                    data=train,
                    task="arith",
                    output=out,
                    student=args.student,
                    vocab_size=600,
                    dropout=0.0,
                    max_steps=args.steps,
                    batch_size=16,
                    learning_rate=3e-3,
                    max_input_length=192,
                    max_label_length=10,
                    max_rationale_length=64,
                    val_fraction=0.1,
                    evaluations_per_stage=3,
                    replay_fraction=fraction,
                    seed=seed,
                    work_dir=work,
                    keep_work_dir=True,
                    progress=False,
                )
                result = distill(config)
                first_work = first_work or work
                report = evaluate_bundle(out, test, write=False, progress=False)
                validation = result.manifest.provenance.self_evaluation_validation
                rows[fraction].append(
                    {
                        "seed": seed,
                        "verdict_after_stage1_val": validation["after_stage1"],
                        "verdict_final_val": validation["final"],
                        "verdict_final_test": report.verdict_result.accuracy,
                        "task_accuracy_test": report.task_result.accuracy,
                        "replay_pairs": result.manifest.provenance.replay_pairs,
                    }
                )
                print(f"seed {seed} replay {fraction}: {rows[fraction][-1]}", flush=True)

    print(f"\n{time.perf_counter() - started:.0f} s; mean over seeds {seeds}")
    print(f"{'replay':>7} {'verdict val s1':>15} {'verdict val final':>18} "
          f"{'verdict test':>13} {'task test':>10}")  # fmt: skip
    summary = {}
    for fraction, runs in rows.items():
        mean = {
            key: statistics.fmean(run[key] for run in runs)
            for key in runs[0]
            if key not in ("seed", "replay_pairs")
        }
        summary[str(fraction)] = {"mean": mean, "runs": runs}
        print(
            f"{fraction:>7} {mean['verdict_after_stage1_val']:>15.3f} "
            f"{mean['verdict_final_val']:>18.3f} {mean['verdict_final_test']:>13.3f} "
            f"{mean['task_accuracy_test']:>10.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
