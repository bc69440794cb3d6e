"""``run_demo``: every stage in order, timed, then the served student and its sample requests.

data ─► teach ─► distill ─► evaluate ─► export ─► trust ─► serve ─► sample requests
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindmirror.demo.served import (
    free_port,
    sample_requests,
    service_available,
    sigterm_as_interrupt,
    start_service,
    stop_service,
    wait_ready,
)
from mindmirror.demo.settings import TEACHERS, DemoSettings, prepare
from mindmirror.demo.stages import (
    data_stage,
    distill_stage,
    evaluate_stage,
    export_stage,
    export_summary,
    teach_stage,
    tokenizer_stage,
    trust_stage,
    trust_summary,
)
from mindmirror.student.errors import MindmirrorError

__all__ = ["DemoResult", "StageReport", "run_demo"]


@dataclass
class StageReport:
    name: str
    seconds: float
    reused: bool
    summary: str


@dataclass
class DemoResult:
    work_dir: Path
    bundle: Path
    stages: list[StageReport] = field(default_factory=list)
    accuracy: float | None = None
    url: str | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def _stage(reports: list[StageReport], name: str, title: str) -> Iterator[dict[str, Any]]:
    """Times one stage; the body fills ``info["summary"]`` and ``info["reused"]``. Progress
    and training logs go to stderr, so stdout carries only the results (the sample requests
    and the summary)."""
    print(f"\n── {title} " + "─" * max(0, 66 - len(title)), file=sys.stderr, flush=True)
    info: dict[str, Any] = {"summary": "", "reused": False}
    started = time.perf_counter()
    with redirect_stdout(sys.stderr):
        yield info
    seconds = time.perf_counter() - started
    reports.append(StageReport(name, seconds, info["reused"], info["summary"]))
    note = "reused (finished in an earlier run)" if info["reused"] else f"{seconds:.1f} s"
    print(f"{name}: {info['summary']} [{note}]", file=sys.stderr, flush=True)


def run_demo(
    settings: DemoSettings, on_ready: Callable[[DemoResult], None] | None = None
) -> DemoResult:
    """Run (or resume) every stage; with ``settings.serve``, start the service, send the
    sample requests and call ``on_ready`` while it still serves. The service is stopped before
    this returns (``keep_serving`` waits for Ctrl-C first)."""
    if settings.teacher not in TEACHERS:
        raise MindmirrorError(
            f"unknown teacher {settings.teacher!r} for the demo; choose {', '.join(TEACHERS)}"
        )
    paths, state = prepare(settings)
    result = DemoResult(work_dir=paths.root, bundle=paths.bundle)
    reports = result.stages

    with _stage(reports, "data", "1/7 data: generate the arith task") as info:
        _, info["summary"], info["reused"] = data_stage(settings, paths, state)
    with _stage(reports, "teach", f"2/7 teach: {settings.teacher} teacher") as info:
        teach_key, info["summary"], info["reused"] = teach_stage(settings, paths, state)
    with _stage(reports, "distill", "3/7 distill: tokenizer, stage 1, stage 2") as info:
        tokenizer_key, _ = tokenizer_stage(settings, paths, state, teach_key)
        _, manifest, info["reused"] = distill_stage(settings, paths, state, tokenizer_key)
        steps = manifest.provenance.training_steps
        validation = getattr(manifest.provenance, "self_evaluation_validation", None) or {}
        verdicts = validation.get("final")
        info["summary"] = (
            f"{settings.student} student, {steps.get('self_evaluation', 0)} + "
            f"{steps.get('cot', 0)} steps"
            + (f"; held-out verdict agreement {verdicts:.1%}" if verdicts is not None else "")
        )
    with _stage(reports, "evaluate", "4/7 evaluate on the test split") as info:
        result.accuracy, info["reused"] = evaluate_stage(settings, paths)
        info["summary"] = f"test accuracy {result.accuracy:.1%} ({settings.test} problems)"
    with _stage(reports, "export", "5/7 export to ONNX (fp32 + int8, parity check)") as info:
        record, info["reused"] = export_stage(settings, paths)
        info["summary"] = export_summary(record)
    with _stage(reports, "trust", "6/7 trust: verdicts vs truth, explanations") as info:
        trust, info["reused"] = trust_stage(settings, paths)
        info["summary"] = trust_summary(trust)
    if not settings.serve:
        return result
    if not service_available():
        raise MindmirrorError(
            "this checkout has no service package (service/__main__.py): the demo stops after "
            f"the export; the student is in {paths.bundle}"
        )
    port = free_port(settings.host, settings.port)
    if port != settings.port:
        print(f"port {settings.port} is in use; serving on {port}", file=sys.stderr)
    url = f"http://{settings.host}:{port}"
    process: subprocess.Popen | None = None
    try:
        with _stage(reports, "serve", f"7/7 serve on {url}") as info:
            process = start_service(paths.bundle, settings.host, port, settings.threads)
            ready = wait_ready(url, process)
            result.url = url
            result.exchanges = sample_requests(url, paths, settings.seed)
            info["summary"] = f"ready in {ready:.1f} s, 3 sample requests answered"
        if on_ready is not None:
            on_ready(result)
        if settings.keep_serving:
            try:
                with sigterm_as_interrupt():
                    process.wait()
            except KeyboardInterrupt:
                print("\nstopping the service", file=sys.stderr)
    finally:
        if process is not None:
            stop_service(process)
    return result
