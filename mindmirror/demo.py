"""``mindmirror demo``: the whole pipeline in one command, offline, on a generated task.

    data ─► teach ─► distill ─► evaluate ─► export ─► serve ─► sample requests

No LLM teacher or pretrained T5 can be assumed on a machine with no key, no GPU and no
network, so by default the demo runs on the ``arith`` task (templated arithmetic word problems
that mindmirror generates) with the **simulated** teacher (a program that writes chains of
thought and self-evaluations with known error rates, see ``docs/demo.md``). Every other stage is
the product's own code: the teacher store and runner, ``distill`` (stage 1 self-evaluation with
replay, then stage 2 chains of thought) on a T5 trained from scratch with a tokenizer trained
on the task text, ``evaluate`` on the test split, ``export`` to ONNX (int8, parity-checked on
the validation split) and the HTTP service on 127.0.0.1.

Everything goes into a work directory (``runs/demo``). A stage that finished is reused when
the demo runs again with the same settings, detected from its output: the data files, a
teacher store with nothing missing, a bundle whose checksums verify, an evaluation recorded in
its manifest, an ONNX export in it. ``demo.json`` there records the settings each finished
stage was made with, so changing a setting redoes that stage and the ones after it only.

Light at import time: every stage imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mindmirror.student.errors import MindmirrorError

__all__ = ["DemoResult", "DemoSettings", "StageReport", "register", "run_demo"]

logger = logging.getLogger(__name__)

STATE_FILE = "demo.json"
STATE_VERSION = 1
#: ``make demo`` exports the time it started (seconds since the epoch), so the total printed at
#: the end includes creating the virtual environment and installing the pinned packages.
STARTED_ENV = "MINDMIRROR_DEMO_STARTED"
TEACHERS = ("simulated", "local", "openai")
#: (stage-1, stage-2) steps per run of ``--ablation``: 4 variants x seeds x error rates runs
ABLATION_STEPS = (150, 400)


@dataclass(frozen=True)
class DemoSettings:
    """Every choice the demo makes; the defaults are the sizing of docs/demo.md."""

    work_dir: Path = Path("runs/demo")
    seed: int = 0
    # --- data (problems per split) ---
    train: int = 12000
    validation: int = 200
    test: int = 500
    two_step_fraction: float = 0.4
    # --- teacher ---
    teacher: str = "simulated"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    error_rate: float = 0.25
    verdict_agreement: float = 0.8
    uncertain_rate: float = 0.1
    cots: int = 2
    evals: int = 1
    concurrency: int = 8
    max_tokens: int = 256
    # --- student ---
    student: str = "scratch:demo"
    vocab_size: int = 800
    # The arith problems come with gold labels, so the student pairs the teacher's rationales
    # with them, as distilling-step-by-step does when human labels exist: with the simulated
    # teacher's answers as labels (a quarter of them wrong) the demo student measured 47% test
    # accuracy against 86% with gold labels (docs/demo.md). The ablation uses the teacher's
    # answers (standard distillation means exactly that).
    label_source: str = "human"
    # 1000, not 800: at 800 steps this student is still on the steep part of its learning curve
    # (two runs: 66.6% and 85.6% test accuracy); 1000 steps measured 95.2% (docs/demo.md).
    steps: int = 1000
    stage1_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    val_fraction: float = 0.02
    max_input_length: int = 192
    max_label_length: int = 24
    max_rationale_length: int = 96
    # torch's choice (all cores) unless set: on a quiet 2-core machine the demo student trained
    # 1.3x faster on two threads than on one; on a busy machine one thread is the better choice.
    threads: int | None = None
    # --- export and service ---
    export_examples: int = 200
    host: str = "127.0.0.1"
    port: int = 8000
    serve: bool = True
    keep_serving: bool = True
    progress: bool = True

    def teacher_options(self) -> dict[str, str]:
        """``--teacher-option`` pairs of the simulated teacher."""
        return {
            "error_rate": str(self.error_rate),
            "verdict_agreement": str(self.verdict_agreement),
            "uncertain_rate": str(self.uncertain_rate),
            "seed": str(self.seed),
        }


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


# ----- the state file: what each finished stage was made with ------------------------------
def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DemoState:
    """``demo.json``: per finished stage, the key of the settings (and upstream stages) it was
    made with. A stage is reused only when its output is complete *and* its key matches."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                data = {}  # a damaged record only costs redoing stages, never wrong reuse
            if data.get("version") == STATE_VERSION:
                self.stages = data.get("stages", {})

    def matches(self, stage: str, key: str) -> bool:
        return self.stages.get(stage, {}).get("key") == key

    def record(self, stage: str, key: str) -> None:
        self.stages[stage] = {"key": key}
        self._write()

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            self._write()

    def _write(self) -> None:
        from mindmirror.student.files import atomic_write_text

        payload = {"version": STATE_VERSION, "stages": self.stages}
        atomic_write_text(self.path, json.dumps(payload, indent=2) + "\n")


# ----- paths ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def split(self, name: str) -> Path:
        return self.data / f"{name}.jsonl"

    def store(self, data_fingerprint: str) -> Path:
        """One teacher store per split content: arith ids repeat across seeds, and a store
        refuses an id whose question changed."""
        return self.root / "teacher" / f"{data_fingerprint[:16]}.sqlite"

    @property
    def distill_set(self) -> Path:
        return self.root / "distill.jsonl"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def bundle(self) -> Path:
        return self.root / "student"

    @property
    def student_work(self) -> Path:
        return self.root / "student.work"


# ----- stages --------------------------------------------------------------------------------
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


def data_stage(settings: DemoSettings, paths: DemoPaths, state: DemoState) -> tuple[str, str, bool]:
    """Generate the arith splits. Returns (key, summary, reused)."""
    from mindmirror.student.tasks.arith import write_arith_data

    key = _key(
        "data",
        settings.seed,
        settings.train,
        settings.validation,
        settings.test,
        settings.two_step_fraction,
    )
    sizes = f"{settings.train} train / {settings.validation} validation / {settings.test} test"
    complete = all(paths.split(name).is_file() for name in ("train", "validation", "test"))
    summary = f"arith problems: {sizes} (in {paths.data})"
    if complete and state.matches("data", key):
        return key, summary, True
    write_arith_data(
        paths.data,
        seed=settings.seed,
        train=settings.train,
        validation=settings.validation,
        test=settings.test,
        two_step_fraction=settings.two_step_fraction,
    )
    state.record("data", key)
    return key, summary, False


def _teacher_backend(settings: DemoSettings) -> Any:
    from mindmirror.training.teacher.backends import TeacherOptions, create_backend

    if settings.teacher == "simulated":
        options = TeacherOptions(extra=settings.teacher_options())
    else:
        options = TeacherOptions(
            model=settings.model,
            base_url=settings.base_url,
            api_key_env=settings.api_key_env,
            threads=settings.threads,
        )
    return create_backend(settings.teacher, options)


def teach_stage(
    settings: DemoSettings,
    paths: DemoPaths,
    state: DemoState,
    *,
    split: str = "train",
    out: Path | None = None,
    stage: str = "teach",
) -> tuple[str, str, bool]:
    """Run the teacher on one split through the store and export its distillation set (to
    ``out``, default the demo's ``distill.jsonl``). Returns (key, summary, reused): the store
    decides what is missing, and a complete store makes no call."""
    import asyncio

    from mindmirror.student.distillation import (
        fingerprint,
        load_task_examples,
        parse_stats,
        write_distillation_set,
    )
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.prompts import Planner, SamplingParams
    from mindmirror.training.teacher.records import export_run
    from mindmirror.training.teacher.runner import RunOptions, TeacherRunner
    from mindmirror.training.teacher.store import Store

    task = get_task("arith")
    backend = _teacher_backend(settings)
    backend.check_task(task)
    out = out or paths.distill_set
    examples = load_task_examples(task, paths.split(split))
    params = SamplingParams(temperature=0.7, max_tokens=settings.max_tokens, seed=settings.seed)
    planner = Planner(task, backend.model_id, settings.cots, settings.evals, params, params)
    # Keyed by the split's content, not by the data settings: a bigger test split does not
    # make the training set's teacher run (or the student after it) stale.
    data_fingerprint = fingerprint(examples)
    key = _key("teach", data_fingerprint, backend.model_id, settings.cots, settings.evals, params)
    print(f"teacher: {backend.describe()}", file=sys.stderr)
    options = RunOptions(
        concurrency=settings.concurrency, progress=settings.progress and sys.stderr.isatty()
    )
    with Store(paths.store(data_fingerprint)) as store:
        store.bind_task(task.name)
        store.add_examples(examples)

        async def drive() -> Any:
            try:
                return await TeacherRunner(store, backend, planner, examples, options).run()
            finally:
                await backend.aclose()

        report = asyncio.run(drive())
        if not report.complete:
            raise MindmirrorError(
                f"the teacher run stopped before finishing ({report.stopped or 'requests failed'});"
                " rerun the demo to continue it (nothing already stored is asked again)\n"
                + report.summary()
            )
        if not (out.is_file() and state.matches(stage, key)):
            write_distillation_set(out, export_run(store, report.run_id).records)
            state.record(stage, key)
    records = _read_set(out)
    stats = parse_stats(task, records)
    accuracy = stats.teacher_accuracy
    summary = (
        f"{stats.cots} chains of thought, {stats.self_evaluations} self-evaluations"
        + (f", teacher accuracy {accuracy:.1%}" if accuracy is not None else "")
        + f" ({report.samples} new samples, {report.slots_done_before} from the store)"
    )
    return key, summary, report.samples == 0


def _read_set(path: Path) -> Any:
    from mindmirror.student.distillation import read_distillation_set
    from mindmirror.student.tasks import get_task

    return read_distillation_set(path, get_task("arith"))


def tokenizer_stage(
    settings: DemoSettings, paths: DemoPaths, state: DemoState, teach_key: str
) -> tuple[str, bool]:
    """A BPE tokenizer trained on the task text (docs/demo.md: unigram stops at ~200 pieces on
    templated text)."""
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.tokenizer import write_tokenizer

    key = _key("tokenizer", teach_key, settings.vocab_size)
    if (paths.tokenizer / "tokenizer.json").is_file() and state.matches("tokenizer", key):
        return key, True
    records, vocab = _read_set(paths.distill_set), settings.vocab_size
    write_tokenizer(records, get_task("arith"), paths.tokenizer, vocab_size=vocab, model_type="bpe")
    state.record("tokenizer", key)
    return key, False


def distill_config(settings: DemoSettings, paths: DemoPaths, *, force: bool) -> Any:
    from mindmirror.training.student.distill import DistillConfig

    return DistillConfig(
        data=paths.distill_set,
        task="arith",
        output=paths.bundle,
        student=settings.student,
        tokenizer=paths.tokenizer,
        vocab_size=settings.vocab_size,
        dropout=0.0,
        self_evaluation=True,
        label_source=settings.label_source,
        seed=settings.seed,
        max_steps=settings.steps,
        self_evaluation_max_steps=settings.stage1_steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        eval_batch_size=128,
        warmup_ratio=0.05,
        weight_decay=0.01,
        max_input_length=settings.max_input_length,
        max_label_length=settings.max_label_length,
        max_rationale_length=settings.max_rationale_length,
        val_fraction=settings.val_fraction,
        evaluations_per_stage=2,
        work_dir=paths.student_work,
        force=force,
        progress=settings.progress,
    )


def distill_stage(
    settings: DemoSettings, paths: DemoPaths, state: DemoState, upstream: str
) -> tuple[str, Any, bool]:
    """Stage 1 (self-evaluation) then stage 2 (chains of thought, with replay); resumable."""
    from mindmirror.student.bundle import BundleError, load_manifest
    from mindmirror.training.student.distill import distill
    from mindmirror.training.student.workdir import RunMismatchError

    config = distill_config(settings, paths, force=True)
    # The tokenizer enters through its own key (upstream), not its path: a moved work
    # directory is still the same run.
    training = {k: v for k, v in config.training_settings().items() if k != "tokenizer"}
    key = _key("distill", upstream, training)
    if state.matches("distill", key):
        try:
            return key, load_manifest(paths.bundle), True
        except BundleError as error:
            logger.warning("the finished student does not verify (%s); training it again", error)
    state.forget("distill")
    try:
        result = distill(config)
    except RunMismatchError:
        # The work folder holds a run with the previous settings: this one starts over.
        shutil.rmtree(paths.student_work, ignore_errors=True)
        result = distill(config)
    state.record("distill", key)
    return key, result.manifest, False


def evaluate_stage(settings: DemoSettings, paths: DemoPaths) -> tuple[float, bool]:
    """Test accuracy of the PyTorch student, recorded in the manifest (reused when there)."""
    from mindmirror.student.bundle import load_manifest
    from mindmirror.student.distillation import fingerprint, load_task_examples
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.evaluate import evaluate_bundle

    test = paths.split("test")
    expected = fingerprint(load_task_examples(get_task("arith"), test))
    for result in load_manifest(paths.bundle).evaluations:
        if (result.split, result.target, result.runtime) == ("test", "task", "pytorch") and (
            result.data_fingerprint == expected
        ):
            return result.accuracy, True
    report = evaluate_bundle(paths.bundle, test, split_name="test", progress=settings.progress)
    return report.task_result.accuracy, False


def export_stage(settings: DemoSettings, paths: DemoPaths) -> tuple[dict[str, Any], bool]:
    """fp32 and int8 ONNX, parity-checked on the validation split (reused when present).

    When int8 loses more accuracy than the export allows (a student this small has little
    redundancy to absorb 8-bit weights), the export refuses it; the demo then exports fp32
    alone and serves that, saying why, rather than stopping the pipeline."""
    from mindmirror.export.errors import ParityError
    from mindmirror.export.pipeline import ExportOptions, run_export
    from mindmirror.student.bundle import load_manifest

    exports = load_manifest(paths.bundle).exports or {}
    if exports.get("onnx", {}).get("variants"):
        return exports["onnx"], True
    options = ExportOptions(
        bundle=paths.bundle,
        variants=("fp32", "int8"),
        data=paths.split("validation"),
        max_examples=settings.export_examples,
        threads=settings.threads,
        force=True,
        progress=settings.progress,
    )
    try:
        result = run_export(options)
    except ParityError as error:
        logger.warning("%s; exporting fp32 alone, which the service will use", error)
        result = run_export(replace(options, variants=("fp32",)))
    return result.manifest.exports["onnx"], False


def export_summary(record: dict[str, Any]) -> str:
    """One line on the variant the service will use (int8, or fp32 when int8 was refused)."""
    name = "int8" if "int8" in record["variants"] else "fp32"
    variant = record["variants"][name]
    accuracy = variant.get("accuracy")
    refused = "" if name == "int8" else " (int8 refused: it lost too much accuracy)"
    return (
        f"{name} exact match {variant['exact_match']:.1%} with PyTorch on the validation split"
        + (f", accuracy {accuracy:.1%}" if accuracy is not None else "")
        + refused
    )


# ----- the service ---------------------------------------------------------------------------
def service_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mindmirror.service.__main__") is not None


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise MindmirrorError(f"cannot find a free port on {host}")


def start_service(bundle: Path, host: str, port: int, threads: int | None) -> subprocess.Popen:
    """``python -m mindmirror.service`` (uvicorn) on the bundle, configured as
    docs/contracts.md says."""
    env = {
        **{name: value for name, value in os.environ.items() if name != STARTED_ENV},
        "MINDMIRROR_BUNDLE": str(bundle),
        "MINDMIRROR_HOST": host,
        "MINDMIRROR_PORT": str(port),
        "MINDMIRROR_DEVICE": "cpu",
        "MINDMIRROR_LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
    }
    if threads:
        env["MINDMIRROR_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "mindmirror.service"], env=env)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until ``/readyz`` answered 200; an error if the service died or took too long."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise MindmirrorError(
                f"the service exited with status {process.returncode} before it was ready "
                "(its error is printed above)"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise MindmirrorError(f"the service at {url} was not ready after {timeout:.0f} s")


def curl_line(url: str, path: str, body: dict[str, Any]) -> str:
    payload = json.dumps(body, ensure_ascii=False)
    return f"curl -s {url}{path} -H 'Content-Type: application/json' -d {shlex.quote(payload)}"


def sample_requests(url: str, paths: DemoPaths, seed: int) -> list[dict[str, Any]]:
    """One predict, one explain and one evaluate request on test questions; the evaluate
    request judges a wrong chain of thought, to show the student catching it."""
    import httpx

    from mindmirror.student.distillation import load_task_examples
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulate_cot

    task = get_task("arith")
    examples = load_task_examples(task, paths.split("test"))
    two_step = [e for e in examples if "(" in (e.label or "")] or examples
    predict_example, explain_example = examples[0], two_step[0]
    judged = examples[1]
    wrong = simulate_cot(judged, 0, SimulatedTeacherConfig(error_rate=1.0, seed=seed))
    calls = [
        ("/v1/predict", {"input": predict_example.question}, predict_example, None),
        ("/v1/explain", {"input": explain_example.question}, explain_example, None),
        (
            "/v1/evaluate",
            {"question": judged.question, "reasoning": wrong.text},
            judged,
            f"this reasoning is wrong ({(wrong.error or '').replace('_', ' ')}); "
            f"the right equation is {judged.label}",
        ),
    ]
    exchanges = []
    with httpx.Client(timeout=120.0) as client:
        for path, body, example, note in calls:
            response = client.post(f"{url}{path}", json=body)
            if response.status_code != 200:
                raise MindmirrorError(
                    f"{path} answered {response.status_code}: {response.text[:300]}"
                )
            value = task.answer_value(example.label) if example.label else None
            exchanges.append(
                {
                    "path": path,
                    "curl": curl_line(url, path, body),
                    "response": response.json(),
                    "gold": f"{example.label} = {value:g}" if value is not None else None,
                    "note": note,
                }
            )
    return exchanges


# ----- the run -------------------------------------------------------------------------------
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
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    paths = DemoPaths(settings.work_dir)
    paths.root.mkdir(parents=True, exist_ok=True)
    state = DemoState(paths.root)
    result = DemoResult(work_dir=paths.root, bundle=paths.bundle)
    reports = result.stages

    with _stage(reports, "data", "1/6 data: generate the arith task") as info:
        _, info["summary"], info["reused"] = data_stage(settings, paths, state)
    with _stage(reports, "teach", f"2/6 teach: {settings.teacher} teacher") as info:
        teach_key, info["summary"], info["reused"] = teach_stage(settings, paths, state)
    with _stage(reports, "distill", "3/6 distill: tokenizer, stage 1, stage 2") as info:
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
    with _stage(reports, "evaluate", "4/6 evaluate on the test split") as info:
        result.accuracy, info["reused"] = evaluate_stage(settings, paths)
        info["summary"] = f"test accuracy {result.accuracy:.1%} ({settings.test} problems)"
    with _stage(reports, "export", "5/6 export to ONNX (fp32 + int8, parity check)") as info:
        record, info["reused"] = export_stage(settings, paths)
        info["summary"] = export_summary(record)
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
        with _stage(reports, "serve", f"6/6 serve on {url}") as info:
            process = start_service(paths.bundle, settings.host, port, settings.threads)
            ready = wait_ready(url, process)
            result.url = url
            result.exchanges = sample_requests(url, paths, settings.seed)
            info["summary"] = f"ready in {ready:.1f} s, 3 sample requests answered"
        if on_ready is not None:
            on_ready(result)
        if settings.keep_serving:
            try:
                with _sigterm_as_interrupt():
                    process.wait()
            except KeyboardInterrupt:
                print("\nstopping the service", file=sys.stderr)
    finally:
        if process is not None:
            _stop(process)
    return result


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a closing terminal, a process manager) stops the demo as Ctrl-C does,
    so the service it started is drained and stopped instead of left running on its own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # the service drains, then exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ----- output --------------------------------------------------------------------------------
def print_exchanges(result: DemoResult, keep_serving: bool = True) -> None:
    if keep_serving:
        print(f"\nThe student is serving at {result.url}. Try it:\n")
    else:
        print(f"\nThe student answered at {result.url} (--once: the service stops now):\n")
    for exchange in result.exchanges:
        print(exchange["curl"])
        print(json.dumps(exchange["response"], ensure_ascii=False))
        if exchange["note"]:
            print(f"# {exchange['note']}")
        elif exchange["gold"]:
            print(f"# gold answer: {exchange['gold']}")
        print()


def print_summary(result: DemoResult, demo_started: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mindmirror demo", title_justify="left")
    table.add_column("stage")
    table.add_column("wall time", justify="right")
    table.add_column("result")
    setup = _setup_seconds(demo_started)
    if setup is not None:
        table.add_row("set-up", f"{setup:.0f} s", "make: virtual environment and pinned install")
    for stage in result.stages:
        time_text = f"{stage.seconds:.1f} s" + (" (reused)" if stage.reused else "")
        table.add_row(stage.name, time_text, stage.summary)
    total = time.time() - demo_started + (setup or 0.0)
    label = "total (including set-up)" if setup is not None else "total"
    table.add_row(label, f"{total:.0f} s", f"work directory {result.work_dir}")
    Console().print(table)


def _setup_seconds(demo_started: float) -> float | None:
    value = os.environ.get(STARTED_ENV)
    if not value:
        return None
    try:
        return max(0.0, demo_started - float(value))
    except ValueError:
        return None


# ----- CLI -----------------------------------------------------------------------------------
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


def register(subparsers: Any) -> None:
    defaults = DemoSettings()
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
        help=f"stage-2 steps (default: {defaults.steps}; {ABLATION_STEPS[1]} per run with "
        "--ablation)",
    )
    student.add_argument(
        "--stage1-steps",
        type=int,
        help=f"self-evaluation steps (default: {defaults.stage1_steps}; {ABLATION_STEPS[0]} per "
        "run with --ablation)",
    )
    student.add_argument("--batch-size", type=int, default=defaults.batch_size)
    student.add_argument("--lr", type=float, default=defaults.learning_rate)
    student.add_argument(
        "--label-source",
        choices=("teacher", "human"),
        help=f"stage-2 labels: the gold ones (default: {defaults.label_source}) or the teacher's "
        "answers (pure distillation; the default with --ablation)",
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
        help="instead of serving: standard distillation, 1 CoT, N CoTs and N CoTs + "
        "self-evaluation over seeds, a mean ± std table and a plot against the teacher's "
        "error rate",
    )
    ablation.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="default: 0,1,2")
    ablation.add_argument(
        "--error-rates",
        type=_rates,
        help="teacher error rates for the plot (default: see docs/demo.md)",
    )
    parser.set_defaults(handler=_run)


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    defaults = DemoSettings()
    stage1_default, steps_default = (
        ABLATION_STEPS if args.ablation else (defaults.stage1_steps, defaults.steps)
    )
    steps = steps_default if args.steps is None else args.steps
    label_source = args.label_source or ("teacher" if args.ablation else defaults.label_source)
    stage1_steps = stage1_default if args.stage1_steps is None else args.stage1_steps
    sizes = {
        "train-size": args.train_size,
        "validation-size": args.validation_size,
        "test-size": args.test_size,
        "steps": steps,
        "stage1-steps": stage1_steps,
        "cots": args.cots,
        "batch-size": args.batch_size,
        "concurrency": args.concurrency,
        "max-tokens": args.max_tokens,
    }
    for name, value in sizes.items():
        if value < 1:
            raise MindmirrorError(f"--{name} must be at least 1")
    if args.evals < 1:
        raise MindmirrorError("--evals must be at least 1 (the demo trains self-evaluation)")
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
        steps=steps,
        stage1_steps=stage1_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        label_source=label_source,
        threads=args.threads or None,
        port=args.port,
        serve=not args.no_serve,
        keep_serving=not args.once,
        progress=not args.no_progress,
    )


def _run(args: argparse.Namespace) -> int:
    started = time.time()
    settings = settings_from_args(args)
    if args.fresh and settings.work_dir.exists():
        shutil.rmtree(settings.work_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.ablation:
        from mindmirror.ablation import run_ablation

        run_ablation(settings, seeds=args.seeds, error_rates=args.error_rates, started=started)
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
