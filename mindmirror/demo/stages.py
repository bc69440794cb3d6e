"""The demo's stages, each a call into the product's own code, reused when already done.

Every stage decides from its output and ``demo.json`` whether it is finished (see
:class:`~mindmirror.demo.settings.DemoState`) and says so in what it returns, so the demo's
table can show which stages ran. Light at import time: each stage imports what it runs.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.demo.settings import TASK, DemoPaths, DemoSettings, DemoState, stage_key
from mindmirror.student.errors import MindmirrorError

if TYPE_CHECKING:
    from mindmirror.training.student.distill import DistillConfig
    from mindmirror.training.teacher.teach import TeachConfig

__all__ = [
    "data_stage",
    "distill_config",
    "distill_stage",
    "evaluate_stage",
    "export_stage",
    "export_summary",
    "teach_config",
    "teach_stage",
    "tokenizer_stage",
    "trust_stage",
    "trust_summary",
]

logger = logging.getLogger(__name__)


def data_stage(settings: DemoSettings, paths: DemoPaths, state: DemoState) -> tuple[str, str, bool]:
    """Generate the arith splits. Returns (key, summary, reused)."""
    from mindmirror.student.tasks.arith import write_arith_data

    key = stage_key(
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


def teach_config(settings: DemoSettings, data: Path, store: Path) -> TeachConfig:
    """The demo's teacher run, as ``mindmirror teach run`` would be given it."""
    from mindmirror.training.teacher.teach import TeachConfig

    if settings.teacher == "simulated":
        # A program, not a model: its settings are its options, and --model does not apply.
        teacher: dict[str, Any] = {"teacher_options": settings.teacher_options()}
    else:
        teacher = {
            "model": settings.model,
            "base_url": settings.base_url,
            "api_key_env": settings.api_key_env,
            "threads": settings.threads,
        }
    return TeachConfig(
        task=TASK,
        data=data,
        store=store,
        teacher=settings.teacher,
        **teacher,
        cots=settings.cots,
        evals=settings.evals,
        temperature=0.7,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        concurrency=settings.concurrency,
        progress=settings.progress,
    )


def teach_stage(
    settings: DemoSettings,
    paths: DemoPaths,
    state: DemoState,
    *,
    split: str = "train",
    out: Path | None = None,
    stage: str = "teach",
) -> tuple[str, str, bool]:
    """Run the teacher on one split through the store (``teach``, as ``mindmirror teach run``)
    and export its distillation set (to ``out``, default the demo's ``distill.jsonl``).
    Returns (key, summary, reused): the store decides what is missing, and a complete store
    makes no call."""
    from mindmirror.student.distillation import fingerprint, load_task_examples, parse_stats
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.records import write_run
    from mindmirror.training.teacher.store import Store
    from mindmirror.training.teacher.teach import teach

    task = get_task(TASK)
    out = out or paths.distill_set
    data = paths.split(split)
    # Keyed by the split's content, not by the data settings: a bigger test split does not
    # make the training set's teacher run (or the student after it) stale.
    data_fingerprint = fingerprint(load_task_examples(task, data))
    config = teach_config(settings, data, paths.store(data_fingerprint))
    report = teach(config)
    run = report.run
    assert run is not None  # not a dry run
    if not report.complete:
        raise MindmirrorError(
            f"the teacher run stopped before finishing ({run.stopped or 'requests failed'});"
            " rerun the demo to continue it (nothing already stored is asked again)\n"
            + run.summary()
        )
    key = stage_key(
        "teach",
        data_fingerprint,
        report.model_id,
        settings.cots,
        settings.evals,
        config.cot_params(),
    )
    # The set is written only when it is missing or stale: teach() was given no ``out``, as
    # its key needs the teacher's model id, which teach() finds.
    if not (out.is_file() and state.matches(stage, key)):
        with Store(config.store) as store:
            write_run(store, out, run.run_id, task)
        state.record(stage, key)
    stats = parse_stats(task, _read_set(out))
    accuracy = stats.teacher_accuracy
    summary = (
        f"{stats.cots} chains of thought, {stats.self_evaluations} self-evaluations"
        + (f", teacher accuracy {accuracy:.1%}" if accuracy is not None else "")
        + f" ({run.samples} new samples, {run.slots_done_before} from the store)"
    )
    return key, summary, run.samples == 0


def _read_set(path: Path) -> Any:
    from mindmirror.student.distillation import read_distillation_set
    from mindmirror.student.tasks import get_task

    return read_distillation_set(path, get_task(TASK))


def tokenizer_stage(
    settings: DemoSettings, paths: DemoPaths, state: DemoState, teach_key: str
) -> tuple[str, bool]:
    """A BPE tokenizer trained on the task text (docs/demo.md: unigram stops at ~200 pieces on
    templated text)."""
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.tokenizer import write_tokenizer

    key = stage_key("tokenizer", teach_key, settings.vocab_size)
    if (paths.tokenizer / "tokenizer.json").is_file() and state.matches("tokenizer", key):
        return key, True
    records, vocab = _read_set(paths.distill_set), settings.vocab_size
    write_tokenizer(records, get_task(TASK), paths.tokenizer, vocab_size=vocab, model_type="bpe")
    state.record("tokenizer", key)
    return key, False


def distill_config(
    settings: DemoSettings,
    paths: DemoPaths,
    *,
    steps: int,
    stage1_steps: int,
    label_source: str,
    force: bool,
    drop_disagreeing: bool = False,
) -> DistillConfig:
    """The student's training on the demo's files. The training budget and label source are
    arguments, not settings, because the demo and the ablation each have their own."""
    from mindmirror.training.student.distill import DistillConfig

    return DistillConfig(
        data=paths.distill_set,
        task=TASK,
        output=paths.bundle,
        student=settings.student,
        tokenizer=paths.tokenizer,
        vocab_size=settings.vocab_size,
        dropout=0.0,
        self_evaluation=True,
        label_source=label_source,
        drop_disagreeing=drop_disagreeing,
        replay_fraction=settings.replay_fraction,
        seed=settings.seed,
        max_steps=steps,
        self_evaluation_max_steps=stage1_steps,
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

    config = distill_config(
        settings,
        paths,
        steps=settings.steps,
        stage1_steps=settings.stage1_steps,
        label_source=settings.label_source,
        force=True,
        drop_disagreeing=settings.drop_disagreeing and settings.label_source != "teacher",
    )
    # The tokenizer enters through its own key (upstream), not its path: a moved work
    # directory is still the same run.
    training = {k: v for k, v in config.training_settings().items() if k != "tokenizer"}
    key = stage_key("distill", upstream, training)
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
    expected = fingerprint(load_task_examples(get_task(TASK), test))
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


def trust_stage(settings: DemoSettings, paths: DemoPaths) -> tuple[dict[str, Any], bool]:
    """What the served student's reasoning is worth (:mod:`mindmirror.trust`), on the first
    ``trust_questions`` test problems through the runtime the service will use: its verdicts on
    two reasonings per problem from a simulated teacher with a seed of its own (about half of
    them wrong), and its greedy explanations. Reused while the bundle's manifest is unchanged."""
    import json

    from mindmirror.service.runtime import StudentModel
    from mindmirror.service.settings import Settings
    from mindmirror.student.bundle import MANIFEST_NAME, sha256_file
    from mindmirror.student.distillation import load_task_examples
    from mindmirror.student.files import atomic_write_text
    from mindmirror.student.tasks import get_task
    from mindmirror.training.teacher.simulated import reasonings_of_known_truth
    from mindmirror.trust import Reasoning, measure_trust

    record = paths.root / "trust.json"
    key = stage_key("trust", sha256_file(paths.bundle / MANIFEST_NAME), settings.trust_questions)
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved["report"], True
    examples = load_task_examples(get_task(TASK), paths.split("test"))[: settings.trust_questions]
    made = reasonings_of_known_truth(examples, 2)
    model = StudentModel.open(Settings(bundle=paths.bundle, num_threads=settings.threads or 0))
    report = measure_trust(
        model, examples, [Reasoning(e, text, right) for e, text, right in made], num_samples=1
    ).to_dict()
    atomic_write_text(record, json.dumps({"key": key, "report": report}, indent=2) + "\n")
    return report, False


def trust_summary(report: dict[str, Any]) -> str:
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    auroc = report["verdict_auroc"]
    return (
        f"verdict AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}, balanced accuracy "
        f"{share(report['verdict_balanced_accuracy'])} on {report['reasonings']} reasonings; "
        f"explain consistent {share(report['explain_consistent'])}, steps right "
        f"{share(report['step_accuracy'])} ({report['questions']} problems)"
    )
