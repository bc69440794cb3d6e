"""CLI: ``mindmirror distill``, ``mindmirror evaluate``, ``mindmirror experiment``.

Light at import time: torch and transformers are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mindmirror.student.errors import MindmirrorError

__all__ = ["register"]

# DistillConfig field -> the flag that sets it, for error messages.
_FLAGS = {
    "learning_rate": "--lr",
    "rationale_weight": "--rationale-weight",
    "gradient_accumulation": "--gradient-accumulation",
}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _distill_options(parser: argparse.ArgumentParser) -> None:
    """The training options shared by ``distill`` and ``experiment``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        type=Path,
        help="distillation set JSONL, or a distilling-step-by-step / Mind's Mirror folder",
    )
    data.add_argument(
        "--task",
        help="task name (svamp, cqa, anli) or a YAML/JSON task spec; default: read from the data",
    )
    data.add_argument("--split", default="train", help="split to read from a release folder")

    student = parser.add_argument_group("student")
    student.add_argument(
        "--student",
        default="scratch:tiny",
        help="hub name (google/t5-v1_1-base), local directory or HF cache entry of a T5, or "
        "scratch:micro|demo|tiny|mini|small for a random-init T5 with a tokenizer trained on the "
        "data (default: %(default)s)",
    )
    student.add_argument("--student-revision", help="hub revision (branch, tag or commit)")
    student.add_argument(
        "--tokenizer", type=Path, help="scratch students: reuse this saved tokenizer"
    )
    student.add_argument("--vocab-size", type=int, default=4000, help="scratch tokenizer size")
    student.add_argument("--dropout", type=float, help="override the model's dropout rate")

    method = parser.add_argument_group("method")
    method.add_argument("--num-cots", type=int, help="CoTs used per question (default: all N)")
    method.add_argument(
        "--self-evaluation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train stage 1 (self-evaluation) before stage 2 (default: on)",
    )
    method.add_argument(
        "--num-self-evaluations", type=int, help="self-evaluations used per CoT (default: all M)"
    )
    method.add_argument(
        "--label-source",
        choices=("teacher", "human"),
        default="teacher",
        help="stage-2 label: the teacher's pseudo-label or the human label",
    )
    method.add_argument(
        "--rationale-weight",
        type=float,
        default=0.5,
        metavar="LAMBDA",
        help="λ in L = CE(label) + λ·CE(rationale) (default: %(default)s)",
    )
    method.add_argument(
        "--alpha",
        type=float,
        help="use the authors' code form L = α·CE(label) + (1-α)·CE(rationale) instead",
    )
    method.add_argument(
        "--replay-fraction",
        type=float,
        help="fraction of the stage-1 pairs mixed into stage 2 so the final student keeps its "
        "self-evaluation (default: see docs/training.md)",
    )

    optim = parser.add_argument_group("optimisation (per stage)")
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--epochs", type=float, default=3.0)
    optim.add_argument(
        "--max-steps", type=int, help="optimizer steps per stage (overrides --epochs)"
    )
    optim.add_argument(
        "--self-evaluation-max-steps",
        type=int,
        help="optimizer steps of stage 1 (self-evaluation) when it should differ from --max-steps",
    )
    optim.add_argument(
        "--lr", type=float, help="learning rate (default: 5e-5 pretrained, 1e-3 from scratch)"
    )
    optim.add_argument("--batch-size", type=int, default=16, help="pairs per device and step")
    optim.add_argument("--eval-batch-size", type=int, default=64)
    optim.add_argument("--gradient-accumulation", type=int, default=1)
    optim.add_argument("--warmup-ratio", type=float, default=0.0)
    optim.add_argument("--weight-decay", type=float, default=0.0)
    optim.add_argument("--max-input-length", type=int, default=512)
    optim.add_argument("--max-label-length", type=int, default=32)
    optim.add_argument("--max-rationale-length", type=int, default=256)
    optim.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 mixed precision (default: on when a CUDA GPU supports it)",
    )
    optim.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")

    select = parser.add_argument_group("model selection")
    select.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of training examples held out for model selection (0: keep the last weights)",
    )
    select.add_argument(
        "--select-by",
        choices=("accuracy", "loss"),
        default="accuracy",
        help="validation metric for picking the checkpoint (default: %(default)s)",
    )
    select.add_argument(
        "--evaluations-per-stage",
        type=int,
        default=5,
        help="validations (and checkpoints) per stage (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _infer_task(data: Path) -> str:
    from mindmirror.student.distillation import detect_layout
    from mindmirror.student.jsonl import iter_jsonl

    layout = detect_layout(data)
    if layout == "jsonl":
        for _, record in iter_jsonl(data):
            if "task" in record:
                return str(record["task"])
            break
    else:
        name = data.name.lower()
        for candidate in ("svamp", "cqa", "anli"):
            if name.startswith(candidate):
                return candidate
    raise MindmirrorError(f"cannot tell the task of {data}; pass --task")


def _config(args: argparse.Namespace, output: Path, **extra: Any) -> Any:
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.distill import DEFAULT_REPLAY_FRACTION, DistillConfig
    from pydantic import ValidationError

    if not args.data.exists():
        raise MindmirrorError(f"data not found: {args.data}")
    task = args.task or _infer_task(args.data)
    get_task(task)  # unknown task: a clear error before anything loads
    values = {
        "data": args.data,
        "task": task,
        "output": output,
        "split": args.split,
        "student": args.student,
        "student_revision": args.student_revision,
        "tokenizer": args.tokenizer,
        "vocab_size": args.vocab_size,
        "dropout": args.dropout,
        "num_cots": args.num_cots,
        "self_evaluation": args.self_evaluation,
        "num_self_evaluations": args.num_self_evaluations,
        "label_source": args.label_source,
        "rationale_weight": args.rationale_weight,
        "alpha": args.alpha,
        "replay_fraction": DEFAULT_REPLAY_FRACTION
        if args.replay_fraction is None
        else args.replay_fraction,
        "seed": args.seed,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "self_evaluation_max_steps": args.self_evaluation_max_steps,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "gradient_accumulation": args.gradient_accumulation,
        "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay,
        "max_input_length": args.max_input_length,
        "max_label_length": args.max_label_length,
        "max_rationale_length": args.max_rationale_length,
        "bf16": args.bf16,
        "cpu": args.cpu,
        "val_fraction": args.val_fraction,
        "select_by": args.select_by,
        "evaluations_per_stage": args.evaluations_per_stage,
        "progress": not args.no_progress,
        **extra,
    }
    try:
        return DistillConfig(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{_flag(str(e['loc'][0])) if e['loc'] else 'options'}: {e['msg']}"
            for e in error.errors()
        )
        raise MindmirrorError(f"invalid options: {problems}") from None


def _distill(args: argparse.Namespace) -> int:
    from mindmirror.training.student.distill import distill
    from mindmirror.training.student.model import resolve_student
    from rich.console import Console

    resolve_student(args.student)  # a typo in --student fails before data is read
    config = _config(
        args,
        args.output,
        work_dir=args.work_dir,
        keep_work_dir=args.keep_work_dir,
        force=args.force,
    )
    result = distill(config)
    if result.bundle is None:  # a non-main DDP process
        return 0
    console = Console(stderr=True)
    provenance = result.manifest.provenance
    for stage in result.stages:
        note = " (finished earlier, not retrained)" if stage.skipped else ""
        metric = (
            f", best validation {stage.metric} {stage.best_metric:.4f}"
            if stage.best_metric is not None
            else ""
        )
        console.print(
            f"stage {stage.name}: {stage.pairs} pairs, {stage.steps} steps, loss "
            f"{stage.first_loss} → {stage.last_loss}{metric}{note}"
        )
    validation = getattr(provenance, "self_evaluation_validation", None)
    if validation:
        console.print(
            f"held-out verdict agreement: {validation['after_stage1']:.4f} after stage 1, "
            f"{validation['final']:.4f} final"
        )
    console.print(f"[green]wrote {result.bundle}[/green]")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mindmirror.student.jsonl import write_jsonl_atomic
    from mindmirror.training.student.evaluate import evaluate_bundle, render_report
    from rich.console import Console

    report = evaluate_bundle(
        args.bundle,
        args.data,
        split=args.split,
        split_name=args.name,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        write=not args.no_write,
        progress=not args.no_progress,
        keep_predictions=args.predictions is not None,
    )
    Console().print(render_report(report))
    if report.unlabelled_skipped:
        Console(stderr=True).print(f"{report.unlabelled_skipped} unlabelled examples skipped")
    if args.predictions is not None:
        write_jsonl_atomic(args.predictions, report.predictions)
    if not args.no_write:
        Console(stderr=True).print(f"recorded in {Path(args.bundle) / 'mindmirror.json'}")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from mindmirror.training.student.experiment import run_experiment
    from rich.console import Console

    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        raise MindmirrorError(
            f"--seeds takes comma-separated integers, not {args.seeds!r}"
        ) from None
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    if not args.test.exists():
        raise MindmirrorError(f"test data not found: {args.test}")
    base = _config(args, args.output / "_", keep_work_dir=False)
    table = run_experiment(
        base,
        args.test,
        output=args.output,
        seeds=seeds,
        variants=variants,
        test_split=args.test_split,
        eval_batch_size=args.eval_batch_size,
    )
    Console().print(table.render())
    Console(stderr=True).print(f"results: {args.output / 'results.json'}")
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    distill = subparsers.add_parser(
        "distill",
        help="train a self-evaluating T5 student from a distillation set",
        description="Stage 1 (self-evaluation) then stage 2 (chain of thought), each with "
        "L = CE(label) + λ·CE(rationale); writes a student bundle. Rerunning the same command "
        "resumes an interrupted run. Multi-GPU: "
        "torchrun --nproc_per_node=K -m mindmirror distill ...",
    )
    _distill_options(distill)
    files = distill.add_argument_group("files")
    files.add_argument("--output", "-o", required=True, type=Path, help="bundle directory to write")
    files.add_argument(
        "--work-dir", type=Path, help="checkpoints and resume state (default: OUTPUT.work)"
    )
    files.add_argument(
        "--keep-work-dir", action="store_true", help="keep checkpoints after the bundle is written"
    )
    files.add_argument("--force", action="store_true", help="replace an existing bundle")
    distill.set_defaults(handler=_distill)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a student bundle on labelled data and record it in the manifest",
    )
    evaluate.add_argument("bundle", type=Path, help="student bundle directory")
    evaluate.add_argument(
        "--data", required=True, type=Path, help="task JSONL, distillation set or release folder"
    )
    evaluate.add_argument("--split", default="test", help="split to read from a release folder")
    evaluate.add_argument("--name", help="name recorded for this data (default: the file name)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    evaluate.add_argument("--limit", type=int, help="score only the first N examples")
    evaluate.add_argument("--predictions", type=Path, help="also write each prediction (JSONL)")
    evaluate.add_argument(
        "--no-write", action="store_true", help="do not record the result in the manifest"
    )
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    experiment = subparsers.add_parser(
        "experiment",
        help="Table 1: standard / 1 CoT / N CoTs / ours over several seeds",
        description="Trains every variant for every seed on the same data and reports test "
        "accuracy as mean ± std. Finished runs are reused when rerun.",
    )
    _distill_options(experiment)
    experiment.add_argument("--test", required=True, type=Path, help="labelled test data")
    experiment.add_argument("--test-split", default="test")
    experiment.add_argument("--seeds", default="0,1,2", help="comma-separated (default: 0,1,2)")
    experiment.add_argument(
        "--variants",
        default="standard,cot-1,cot-N,ours",
        help="comma-separated subset of standard,cot-1,cot-N,ours",
    )
    experiment.add_argument(
        "--output", "-o", required=True, type=Path, help="folder for the runs and results.json"
    )
    experiment.add_argument("--json", action="store_true", help="also print the table as JSON")
    experiment.set_defaults(handler=_experiment)
