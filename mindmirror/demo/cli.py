"""``mindmirror demo``: the options, checked before any stage runs, and what is printed.

``--ablation`` runs :mod:`mindmirror.demo.ablation` instead of serving; its own defaults
(shorter runs, the teacher's labels) come from :class:`AblationSettings`, the demo's from
:class:`DemoSettings`, so the help states both and neither rewrites the other.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mindmirror.demo.ablation import AblationSettings, check_variants, run_ablation
from mindmirror.demo.pipeline import DemoResult, run_demo
from mindmirror.demo.report import print_exchanges, print_summary
from mindmirror.demo.settings import TEACHERS, DemoSettings
from mindmirror.student.errors import MindmirrorError

__all__ = ["ablation_settings_from_args", "register", "settings_from_args"]

#: the options whose defaults the demo and the ablation each set for themselves
BUDGET_OPTIONS = ("steps", "stage1_steps", "label_source")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _rates(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one variant")
    return names


def register(subparsers: Any) -> None:
    defaults, ablation_defaults = DemoSettings(), AblationSettings()
    parser = subparsers.add_parser(
        "demo",
        help="the whole pipeline offline: simulated teacher, distil, export, serve",
        description=(
            "Generate the arith task, teach it (a SIMULATED teacher by default: a program with "
            "known error rates, not an LLM), distil a T5 from scratch, evaluate it, export it "
            "to ONNX and serve it on 127.0.0.1, then send one predict, one explain and one "
            "evaluate request. Finished stages are reused when run again. See docs/demo.md."
        ),
    )
    parser.add_argument(
        "--work-dir", type=Path, default=defaults.work_dir, help="default: %(default)s"
    )
    parser.add_argument("--fresh", action="store_true", help="delete the work directory first")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch threads (default: torch's choice, one per core; 1 is faster on a machine "
        "busy with other work)",
    )

    data = parser.add_argument_group("data (arith problems per split)")
    data.add_argument("--train-size", type=int, default=defaults.train)
    data.add_argument("--validation-size", type=int, default=defaults.validation)
    data.add_argument("--test-size", type=int, default=defaults.test)

    teacher = parser.add_argument_group("teacher")
    teacher.add_argument(
        "--teacher",
        choices=TEACHERS,
        default=defaults.teacher,
        help="simulated (default, offline, instant), local (SmolLM2 on transformers; slow "
        "and mostly wrong: use a small --train-size) or openai (any OpenAI-compatible "
        "endpoint: --base-url, --model; key from $OPENAI_API_KEY)",
    )
    teacher.add_argument("--model", help="model for --teacher local or openai")
    teacher.add_argument("--base-url", help="OpenAI-compatible base URL for --teacher openai")
    teacher.add_argument("--api-key-env", default=defaults.api_key_env, metavar="NAME")
    teacher.add_argument("--concurrency", type=int, default=defaults.concurrency)
    teacher.add_argument(
        "--max-tokens",
        type=int,
        default=defaults.max_tokens,
        help="LLM teachers: tokens per answer (default: %(default)s)",
    )
    teacher.add_argument("--cots", type=int, default=defaults.cots, help="N per problem")
    teacher.add_argument("--evals", type=int, default=defaults.evals, help="M per CoT")
    teacher.add_argument(
        "--error-rate",
        type=float,
        default=defaults.error_rate,
        help="simulated teacher: share of wrong chains of thought (default: %(default)s)",
    )
    teacher.add_argument(
        "--verdict-agreement",
        type=float,
        default=defaults.verdict_agreement,
        help="simulated teacher: share of self-evaluations whose verdict is right",
    )

    student = parser.add_argument_group("student")
    student.add_argument(
        "--steps",
        type=int,
        help=f"stage-2 steps (default: {defaults.steps}; {ablation_defaults.steps} per run "
        "with --ablation)",
    )
    student.add_argument(
        "--stage1-steps",
        type=int,
        help=f"self-evaluation steps (default: {defaults.stage1_steps}; "
        f"{ablation_defaults.stage1_steps} per run with --ablation)",
    )
    student.add_argument("--batch-size", type=int, default=defaults.batch_size)
    student.add_argument("--lr", type=float, default=defaults.learning_rate)
    student.add_argument(
        "--label-source",
        choices=("teacher", "human"),
        help=f"stage-2 labels: the gold ones (default: {defaults.label_source}) or the teacher's "
        f"answers (pure distillation; the default with --ablation: "
        f"{ablation_defaults.label_source})",
    )
    student.add_argument(
        "--keep-disagreeing",
        action="store_true",
        help="also train on the teacher's rationales whose answer is not the gold label (the "
        "paper's setting; by default the demo drops them: distill --drop-disagreeing)",
    )
    student.add_argument(
        "--replay-fraction",
        type=float,
        default=defaults.replay_fraction,
        help=f"share of stage-1 pairs replayed in stage 2 (default: {defaults.replay_fraction})",
    )

    serve = parser.add_argument_group("service")
    serve.add_argument("--port", type=int, default=defaults.port)
    serve.add_argument("--no-serve", action="store_true", help="stop after the export")
    serve.add_argument(
        "--once",
        action="store_true",
        help="send the sample requests, then stop the service and exit (for scripts)",
    )

    ablation = parser.add_argument_group("ablation (Table 1 on the demo's data)")
    ablation.add_argument(
        "--ablation",
        action="store_true",
        help="instead of serving: standard distillation, 1 CoT, N CoTs, N CoTs + "
        "self-evaluation and N CoTs on verdict-cleaned data over seeds, a mean ± std table and "
        "a plot against the teacher's error rate",
    )
    seeds = ",".join(map(str, ablation_defaults.seeds))
    ablation.add_argument(
        "--seeds", type=_seeds, default=list(ablation_defaults.seeds), help=f"default: {seeds}"
    )
    ablation.add_argument(
        "--error-rates",
        type=_rates,
        help="teacher error rates for the plot (default: see docs/demo.md)",
    )
    ablation.add_argument(
        "--variants",
        type=_names,
        help=f"rows, comma-separated names of mindmirror experiment's variants (default: "
        f"{','.join(ablation_defaults.variants)}; see docs/demo.md)",
    )
    parser.set_defaults(handler=_run)


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    """The demo's settings; bad values are refused here, before any stage runs."""
    return _demo_settings(args, _budget(args))


def ablation_settings_from_args(args: argparse.Namespace) -> AblationSettings:
    """The ablation's settings: the training budget given here is its own, the rest (data,
    teacher, student shape) the demo's that it shares."""
    settings = AblationSettings(
        demo=_demo_settings(args, {}),
        seeds=tuple(args.seeds),
        error_rates=tuple(args.error_rates or AblationSettings.error_rates),
        **({"variants": tuple(args.variants)} if args.variants else {}),
        **_budget(args),
    )
    check_variants(settings.variants)
    return settings


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    """The budget options given; absent ones keep the demo's or the ablation's default."""
    return {name: getattr(args, name) for name in BUDGET_OPTIONS if getattr(args, name) is not None}


def _demo_settings(args: argparse.Namespace, budget: dict[str, Any]) -> DemoSettings:
    sizes = {
        "train-size": args.train_size,
        "validation-size": args.validation_size,
        "test-size": args.test_size,
        "steps": args.steps,
        "stage1-steps": args.stage1_steps,
        "cots": args.cots,
        "batch-size": args.batch_size,
        "concurrency": args.concurrency,
        "max-tokens": args.max_tokens,
    }
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise MindmirrorError(f"--{name} must be at least 1")
    if args.evals < 1:
        raise MindmirrorError("--evals must be at least 1 (the demo trains self-evaluation)")
    if not 0.0 <= args.replay_fraction < 1.0:
        raise MindmirrorError(f"--replay-fraction must be in [0, 1), not {args.replay_fraction}")
    if args.teacher == "openai" and not args.base_url and not os.environ.get(args.api_key_env):
        raise MindmirrorError(
            f"--teacher openai needs --base-url (a local vLLM/Ollama server) or ${args.api_key_env}"
            " set for OpenAI itself"
        )
    if args.teacher == "openai" and not args.model:
        raise MindmirrorError("--teacher openai needs --model")
    if args.teacher == "simulated":
        from mindmirror.training.teacher.simulated import SimulatedTeacherConfig

        # Bad rates are refused before any stage runs.
        SimulatedTeacherConfig(error_rate=args.error_rate, verdict_agreement=args.verdict_agreement)
    return DemoSettings(
        work_dir=args.work_dir,
        seed=args.seed,
        train=args.train_size,
        validation=args.validation_size,
        test=args.test_size,
        teacher=args.teacher,
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        error_rate=args.error_rate,
        verdict_agreement=args.verdict_agreement,
        cots=args.cots,
        evals=args.evals,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        drop_disagreeing=not args.keep_disagreeing,
        replay_fraction=args.replay_fraction,
        threads=args.threads or None,
        port=args.port,
        serve=not args.no_serve,
        keep_serving=not args.once,
        progress=not args.no_progress,
        **budget,
    )


def _run(args: argparse.Namespace) -> int:
    started = time.time()
    ablation = ablation_settings_from_args(args) if args.ablation else None
    settings = ablation.demo if ablation is not None else settings_from_args(args)
    if args.fresh and settings.work_dir.exists():
        shutil.rmtree(settings.work_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if ablation is not None:
        run_ablation(ablation, started=started)
        return 0
    if settings.teacher == "simulated":
        print(
            "mindmirror demo: the teacher is SIMULATED (a program with known error rates that "
            "writes chains of thought and self-evaluations from each problem's gold equation, "
            "not an LLM); everything after it is the real pipeline.",
            file=sys.stderr,
        )

    def on_ready(result: DemoResult) -> None:
        print_exchanges(result, settings.keep_serving)
        print_summary(result, started)
        if settings.keep_serving:
            print(f"\nServing at {result.url} until Ctrl-C.", flush=True)

    result = run_demo(settings, on_ready=on_ready)
    if not settings.serve:
        print_summary(result, started)
        print(f"student bundle with ONNX export: {result.bundle}")
    return 0
