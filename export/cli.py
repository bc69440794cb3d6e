"""``mindmirror export BUNDLE``: add ONNX (and CTranslate2) runtimes with a parity report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return list(dict.fromkeys(names))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a student bundle to ONNX (fp32, int8, fp16-mixed) with a parity report",
        description=(
            "Export BUNDLE's T5 to ONNX with optimum-onnx (encoder + merged decoder with past), "
            "derive int8 (CPU) and fp16-mixed (GPU) variants, optionally convert to "
            "CTranslate2, check every variant against the PyTorch model (onnx/parity.json) and "
            "write them into BUNDLE/onnx/ with checksums in the manifest. Nothing in the bundle "
            "changes unless every check passes."
        ),
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="student bundle directory")
    parser.add_argument(
        "--variants",
        type=_names,
        default=["fp32", "int8", "fp16-mixed"],
        help="ONNX variants to write, comma-separated (default: fp32,int8,fp16-mixed; fp32 "
        "is required)",
    )
    parser.add_argument(
        "--ctranslate2", action="store_true", help="also convert to CTranslate2 (ctranslate2/)"
    )
    parser.add_argument(
        "--ctranslate2-variants",
        type=_names,
        default=["int8", "fp32"],
        metavar="VARIANTS",
        help="CTranslate2 variants with --ctranslate2 (default: int8,fp32)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="validation data for the parity check: task JSONL (labels give accuracy), a "
        "distillation set, or a distilling-step-by-step / Mind's Mirror folder; without it, "
        "inputs are generated from the task's exemplars",
    )
    parser.add_argument("--split", default="test", help="split to read from a data folder")
    parser.add_argument("--task", help="task name or spec path (default: the manifest's task)")
    parser.add_argument(
        "--max-examples", type=int, default=100, help="predict inputs checked (default 100)"
    )
    parser.add_argument(
        "--max-explain",
        type=int,
        default=16,
        help="explain (rationale) inputs checked; they decode up to max_new_tokens_explain "
        "tokens each (default 16)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="parity batch size")
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="refuse a quantized variant whose accuracy is more than this many points below "
        "PyTorch's (labelled data only; default 1)",
    )
    parser.add_argument(
        "--fp32-atol",
        type=float,
        default=1e-3,
        help="largest logit difference fp32 may show against PyTorch (default 1e-3)",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: optimum's for T5)")
    parser.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime/CTranslate2")
    parser.add_argument("--report", type=Path, help="also write the parity report here")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing export (onnx/, ctranslate2/)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from mindmirror.export.pipeline import ExportOptions, run_export

    options = ExportOptions(
        bundle=args.bundle,
        variants=args.variants,
        ctranslate2=args.ctranslate2_variants if args.ctranslate2 else (),
        data=args.data,
        split=args.split,
        task=args.task,
        max_examples=args.max_examples,
        max_explain=args.max_explain,
        batch_size=args.batch_size,
        max_accuracy_drop=args.max_accuracy_drop,
        fp32_atol=args.fp32_atol,
        opset=args.opset,
        force=args.force,
        report=args.report,
        threads=args.threads,
        progress=not args.no_progress,
    )
    result = run_export(options)
    print(format_report(result.report))
    record = result.manifest.exports["onnx"]
    print(
        f"wrote {args.bundle}/onnx/ ({', '.join(record['variants'])}); recommended: "
        + ", ".join(f"{device} -> {name}" for device, name in record["recommended"].items())
    )
    return 0


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}"
    return str(value)


def format_report(report: dict[str, Any]) -> str:
    """A short table of the parity report."""
    pytorch = report["pytorch"]["accuracy"]
    lines = [
        f"parity on {sum(report['data']['inputs'].values())} inputs "
        f"({report['data']['source']}); PyTorch accuracy: {_number(pytorch)}",
        f"{'variant':<22}{'exact':>8}{'tokens':>9}{'max|dlogit|':>13}{'accuracy':>10}"
        f"{'delta pt':>10}  checked on",
    ]
    for key, entry in report["variants"].items():
        lines.append(
            f"{key:<22}{_number(entry['exact_match']):>8}{_number(entry['token_agreement']):>9}"
            f"{_number(entry['max_abs_logit_diff'], 3):>13}{_number(entry['accuracy']):>10}"
            f"{_number(entry.get('accuracy_delta_points'), 3):>10}  {entry['verified_on']}"
        )
    return "\n".join(lines)
