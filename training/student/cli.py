"""CLI: ``mindmirror distill``, ``mindmirror evaluate``, ``mindmirror experiment``.

Every training option is a :class:`~mindmirror.training.student.distill.DistillConfig` field,
and its default and help are the model's (one source, as ``service/cli.py`` does with the
service's ``Settings``): a flag not given is not passed, so the model's default applies. The
evaluate and experiment options likewise leave their defaults to the functions they call.

Light at import time: torch and transformers are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mindmirror.student.errors import MindmirrorError

__all__ = ["register"]

# A DistillConfig field's flag is its name (--vocab-size for vocab_size) but for these.
_FLAG_NAMES = {"learning_rate": "--lr", "progress": "--no-progress"}


def _flag(field: str) -> str:
    return _FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def _option(group: Any, field: str, *aliases: str, **settings: Any) -> None:
    """Add the flag of a :class:`DistillConfig` field. Its help and default come from the
    model: the flag has no default of its own (an option not given is not passed, so the
    model's default applies) and the help states the model's."""
    from mindmirror.training.student.distill import DistillConfig

    info = DistillConfig.model_fields[field]
    text = info.description or ""
    flag_only = settings.get("action") == "store_true"
    if not (flag_only or info.is_required() or info.default is None):
        shown = (
            ("on" if info.default else "off") if isinstance(info.default, bool) else info.default
        )
        text += f" (default: {shown})"
    if get_origin(info.annotation) is Literal:
        settings.setdefault("choices", get_args(info.annotation))
    if "action" not in settings and "choices" not in settings:
        settings.setdefault("metavar", _flag(field).lstrip("-").replace("-", "_").upper())
    group.add_argument(
        _flag(field),
        *aliases,
        dest=field,
        default=argparse.SUPPRESS,
        help=text.replace("%", "%%"),
        **settings,
    )


def _distill_options(parser: argparse.ArgumentParser) -> None:
    """The training options shared by ``distill`` and ``experiment``."""
    bool_flag = {"action": argparse.BooleanOptionalAction}
    data = parser.add_argument_group("data")
    _option(data, "data", required=True, type=Path)
    data.add_argument(
        "--task",
        default=argparse.SUPPRESS,
        help="task name (svamp, cqa, anli) or a YAML/JSON task spec; default: read from the data",
    )
    _option(data, "split")

    student = parser.add_argument_group("student")
    _option(student, "student")
    _option(student, "student_revision")
    _option(student, "tokenizer", type=Path)
    _option(student, "vocab_size", type=int)
    _option(student, "dropout", type=float)

    method = parser.add_argument_group("method")
    _option(method, "num_cots", type=int)
    _option(method, "self_evaluation", **bool_flag)
    _option(method, "num_self_evaluations", type=int)
    _option(method, "label_source")
    _option(method, "drop_judged_wrong", **bool_flag)
    _option(method, "drop_disagreeing", **bool_flag)
    _option(method, "rationale_weight", type=float, metavar="LAMBDA")
    _option(method, "alpha", type=float)
    _option(method, "replay_fraction", type=float)

    optim = parser.add_argument_group("optimisation (per stage)")
    _option(optim, "seed", type=int)
    _option(optim, "epochs", type=float)
    _option(optim, "max_steps", type=int)
    _option(optim, "self_evaluation_max_steps", type=int)
    _option(optim, "learning_rate", type=float)
    for field in ("batch_size", "eval_batch_size", "gradient_accumulation"):
        _option(optim, field, type=int)
    _option(optim, "warmup_ratio", type=float)
    _option(optim, "weight_decay", type=float)
    for field in ("max_input_length", "max_label_length", "max_rationale_length"):
        _option(optim, field, type=int)
    _option(optim, "bf16", **bool_flag)
    _option(optim, "cpu", action="store_true")

    select = parser.add_argument_group("model selection")
    _option(select, "val_fraction", type=float)
    _option(select, "select_by")
    _option(select, "evaluations_per_stage", type=int)
    parser.add_argument(
        _flag("progress"),
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bars",
    )


def _config(args: argparse.Namespace, output: Path, **extra: Any) -> Any:
    """The run's :class:`DistillConfig`: the options given, the model's defaults for the rest."""
    from mindmirror.student.distillation import task_name_of
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.distill import DistillConfig
    from pydantic import ValidationError

    if not args.data.exists():
        raise MindmirrorError(f"data not found: {args.data}")
    given = {field: getattr(args, field) for field in DistillConfig.model_fields if field in args}
    task = given.get("task") or task_name_of(args.data)
    if task is None:
        raise MindmirrorError(f"cannot tell the task of {args.data}; pass --task")
    get_task(task)  # unknown task: a clear error before anything loads
    try:
        return DistillConfig(**{**given, "task": task, "output": output, **extra})
    except ValidationError as error:
        problems = "; ".join(
            f"{_flag(str(e['loc'][0])) if e['loc'] else 'options'}: {e['msg']}"
            for e in error.errors()
        )
        raise MindmirrorError(f"invalid options: {problems}") from None


def _distill(args: argparse.Namespace) -> int:
    from mindmirror.training.student.distill import distill
    from rich.console import Console

    config = _config(args, args.output)
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


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line (the others keep the defaults of
    the function they are passed to)."""
    return {name: getattr(args, name) for name in names if name in args}


def _evaluate(args: argparse.Namespace) -> int:
    from mindmirror.student.jsonl import write_jsonl_atomic
    from mindmirror.training.student.evaluate import evaluate_bundle, render_report
    from rich.console import Console

    report = evaluate_bundle(
        args.bundle,
        args.data,
        split_name=args.name,
        device=args.device,
        limit=args.limit,
        write=not args.no_write,
        progress=not args.no_progress,
        keep_predictions=args.predictions is not None,
        **_given(args, "split", "batch_size"),
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

    options = _given(args, "test_split", "seeds", "variants")
    if "seeds" in options:
        try:
            options["seeds"] = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
        except ValueError:
            raise MindmirrorError(
                f"--seeds takes comma-separated integers, not {args.seeds!r}"
            ) from None
    if "variants" in options:
        options["variants"] = [name.strip() for name in args.variants.split(",") if name.strip()]
    if not args.test.exists():
        raise MindmirrorError(f"test data not found: {args.test}")
    base = _config(args, args.output / "_", keep_work_dir=False)
    table = run_experiment(
        base, args.test, output=args.output, eval_batch_size=base.eval_batch_size, **options
    )
    Console().print(table.render())
    Console(stderr=True).print(f"results: {args.output / 'results.json'}")
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from mindmirror.training.student.experiment import DEFAULT_SEEDS, DEFAULT_VARIANTS, VARIANTS

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
    _option(files, "output", "-o", required=True, type=Path)
    _option(files, "work_dir", type=Path)
    _option(files, "keep_work_dir", action="store_true")
    _option(files, "force", action="store_true")
    distill.set_defaults(handler=_distill)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a student bundle on labelled data and record it in the manifest",
    )
    evaluate.add_argument("bundle", type=Path, help="student bundle directory")
    evaluate.add_argument(
        "--data", required=True, type=Path, help="task JSONL, distillation set or release folder"
    )
    # No defaults here: evaluate_bundle's apply to the options not given.
    evaluate.add_argument(
        "--split", default=argparse.SUPPRESS, help="split to read from a release folder"
    )
    evaluate.add_argument("--name", help="name recorded for this data (default: the file name)")
    evaluate.add_argument("--batch-size", type=int, default=argparse.SUPPRESS)
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
        help="Table 1: standard / 1 CoT / N CoTs / ours (and the data-cleaning rows) over "
        "several seeds",
        description="Trains every variant for every seed on the same data and reports test "
        "accuracy as mean ± std. Finished runs are reused when rerun.",
    )
    _distill_options(experiment)
    experiment.add_argument("--test", required=True, type=Path, help="labelled test data")
    experiment.add_argument("--test-split", default=argparse.SUPPRESS)
    experiment.add_argument(
        "--seeds",
        default=argparse.SUPPRESS,
        help=f"comma-separated (default: {','.join(map(str, DEFAULT_SEEDS))})",
    )
    experiment.add_argument(
        "--variants",
        default=argparse.SUPPRESS,
        help=f"comma-separated, of {','.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    experiment.add_argument(
        "--output", "-o", required=True, type=Path, help="folder for the runs and results.json"
    )
    experiment.add_argument("--json", action="store_true", help="also print the table as JSON")
    experiment.set_defaults(handler=_experiment)
