"""``mindmirror export``: validate -> convert -> variants -> verify (parity) -> write.

Everything is built in a hidden staging directory inside the bundle (``.export-XXXX``, same
filesystem, so moving it into place is a rename) and only the *write* step touches the bundle's
visible contents: ``onnx/`` (and ``ctranslate2/``) are renamed into place, then the manifest is
rewritten with the checksums of every file and the ``exports`` record. A failure or a kill at
any earlier point leaves the bundle exactly as it was; the next export removes the stale staging
directory. One export runs per bundle at a time (an advisory lock on ``.export.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.export.convert import VARIANTS
from mindmirror.export.ct2 import CT2_VARIANTS
from mindmirror.export.errors import ExportError, ParityError
from mindmirror.student.bundle import (
    BundleError,
    Manifest,
    load_manifest,
    verify_checksums,
    write_manifest,
)
from mindmirror.student.files import atomic_write_text
from mindmirror.student.tasks import Task, get_task

from mindmirror import __version__

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EXPORT_DIRS",
    "FAILED_REPORT_NAME",
    "ExportOptions",
    "ExportResult",
    "run_export",
]

logger = logging.getLogger(__name__)

#: bundle paths the export owns (replaced as a whole by ``--force``)
EXPORT_DIRS = ("onnx", "ctranslate2")
SUPPORTED_MODEL_TYPES = ("t5", "mt5")
FAILED_REPORT_NAME = ".parity-failed.json"  # hidden: never part of the bundle's checksums
_STAGING_PREFIX = ".export-"
_LOCK_NAME = ".export.lock"
REPORT_FORMAT_VERSION = 1


@dataclass
class ExportOptions:
    bundle: Path
    variants: Sequence[str] = ("fp32", "int8", "fp16-mixed")
    ctranslate2: Sequence[str] = ()
    data: Path | None = None
    split: str = "test"
    task: str | None = None
    max_examples: int = 100
    max_explain: int = 16
    batch_size: int = 8
    max_accuracy_drop: float = 1.0  # points
    fp32_atol: float = 1e-3
    opset: int | None = None
    force: bool = False
    report: Path | None = None
    threads: int | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class ExportResult:
    manifest: Manifest
    report: dict[str, Any]
    written: list[str] = field(default_factory=list)


# ----- validate --------------------------------------------------------------------------------
@contextlib.contextmanager
def _export_lock(bundle: Path) -> Iterator[None]:
    try:
        handle = (bundle / _LOCK_NAME).open("a")
    except OSError as error:
        raise ExportError(f"cannot write into {bundle}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"another export of {bundle} is running") from None
        yield
    finally:
        handle.close()  # releases the lock (so does the process dying)


def _owned_by_export(relative: str) -> bool:
    return relative.split("/", 1)[0] in EXPORT_DIRS


def _validate(options: ExportOptions) -> tuple[Manifest, Task, dict[str, Any]]:
    bundle = options.bundle
    unknown = [v for v in options.variants if v not in VARIANTS]
    if unknown:
        raise ExportError(
            f"unknown ONNX variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}"
        )
    if "fp32" not in options.variants:
        raise ExportError(
            "the fp32 variant is always exported: every other one is checked next to it"
        )
    unknown = [v for v in options.ctranslate2 if v not in CT2_VARIANTS]
    if unknown:
        raise ExportError(
            f"unknown CTranslate2 variant(s) {', '.join(unknown)}; "
            f"choose from {', '.join(CT2_VARIANTS)}"
        )
    if options.data is not None and not options.data.exists():
        raise ExportError(f"--data {options.data} not found")
    for name in ("max_examples", "max_explain", "batch_size"):
        if getattr(options, name) < 1:
            raise ExportError(f"--{name.replace('_', '-')} must be at least 1")

    manifest = load_manifest(bundle, verify=False)
    # The model must be exactly what was trained; the previous export may be replaced.
    model_files = {k: v for k, v in manifest.files.items() if not _owned_by_export(k)}
    verify_checksums(bundle, manifest.model_copy(update={"files": model_files}))

    config_path = bundle / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read {config_path}: {error}") from None
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(
            f"{bundle} holds a {model_type!r} model; mindmirror export supports T5 students "
            f"({', '.join(SUPPORTED_MODEL_TYPES)})"
        )

    existing = [name for name in EXPORT_DIRS if (bundle / name).exists()]
    if (existing or manifest.exports) and not options.force:
        where = ", ".join(f"{name}/" for name in existing) or "the manifest's exports record"
        raise ExportError(f"{bundle} already has an export ({where}); pass --force to replace it")
    if existing:
        export_files = {k: v for k, v in manifest.files.items() if _owned_by_export(k)}
        try:
            verify_checksums(bundle, manifest.model_copy(update={"files": export_files}))
        except BundleError as error:
            logger.warning("the export being replaced did not verify: %s", error)

    task = get_task(options.task or manifest.task)
    return manifest, task, config


def _remove_stale_staging(bundle: Path) -> None:
    for path in bundle.glob(f"{_STAGING_PREFIX}*"):
        if path.is_dir():
            logger.info("removing %s, left by an interrupted export", path.name)
            shutil.rmtree(path, ignore_errors=True)


# ----- verify ----------------------------------------------------------------------------------
def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _reference_generate(
    model: Any, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int, special: Any
) -> tuple[list[list[int]], np.ndarray]:
    """PyTorch greedy decoding: outputs cut after the end token, and logits per step."""
    import torch
    from mindmirror.export.runtime import cut_after_eos

    config = special.greedy_config(max_new_tokens)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            generation_config=config,
            use_model_defaults=False,
            return_dict_in_generate=True,
            output_logits=True,
        )
    rows = [cut_after_eos(row.tolist(), special.eos) for row in out.sequences[:, 1:]]
    logits = torch.stack(out.logits, dim=1).float().numpy()
    return rows, logits


def _verify(
    options: ExportOptions,
    manifest: Manifest,
    task: Task,
    model: Any,
    tokenizer: Any,
    staging: Path,
    structures: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers
    from mindmirror.export import parity
    from mindmirror.export.runtime import Ct2Seq2Seq, OnnxSeq2Seq, read_special_tokens
    from tqdm import tqdm

    special = read_special_tokens(options.bundle)
    vocabulary = tokenizer.get_vocab()
    inputs, description = parity.build_inputs(
        manifest,
        task,
        options.data,
        split=options.split,
        max_examples=options.max_examples,
        max_explain=options.max_explain,
        seed=options.seed,
        # In id order: a fast tokenizer's vocabulary dict has no stable order across runs.
        vocabulary=sorted(vocabulary, key=vocabulary.__getitem__),
    )
    logger.info("parity check on %d inputs (%s)", len(inputs), description["source"])
    if manifest.generation.num_beams > 1:
        logger.warning(
            "the manifest asks for beam search (num_beams=%d); parity is checked for greedy "
            "decoding, which every runtime here implements the same way",
            manifest.generation.num_beams,
        )

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    runtimes: dict[str, Any] = {}
    runtime_info: dict[str, dict[str, Any]] = {}
    for name in options.variants:
        spec = VARIANTS[name]
        on_cuda = cuda and "cuda" in spec.devices and "cpu" not in spec.devices
        providers = ["CUDAExecutionProvider"] if on_cuda else ["CPUExecutionProvider"]
        runtimes[f"onnx/{name}"] = OnnxSeq2Seq.from_directory(
            staging / "onnx" / name, special, providers=providers, threads=options.threads
        )
        runtime_info[f"onnx/{name}"] = {
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": providers[0],
            "verified_on": "cuda" if on_cuda else "cpu",
            "precision": spec.precision,
            "devices": list(spec.devices),
        }
    for name in options.ctranslate2:
        import ctranslate2

        runtimes[f"ctranslate2/{name}"] = Ct2Seq2Seq(
            staging / "ctranslate2" / name, tokenizer, special, threads=options.threads or 0
        )
        runtime_info[f"ctranslate2/{name}"] = {
            "runtime": f"ctranslate2 {ctranslate2.__version__}",
            "provider": "cpu",
            "verified_on": "cpu",
            "precision": CT2_VARIANTS[name],
            "devices": ["cpu", "cuda"],
        }

    results = {key: parity.VariantParity(key) for key in runtimes}
    reference_correct = reference_labelled = 0
    headroom_samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    # Inputs of one kind share a length limit; batching them together keeps batches uniform.
    order = sorted(range(len(inputs)), key=lambda i: (inputs[i].max_new_tokens, i))
    batches = [
        batch
        for limit in sorted({inputs[i].max_new_tokens for i in order})
        for batch in _batches(
            [i for i in order if inputs[i].max_new_tokens == limit], options.batch_size
        )
    ]
    bar = tqdm(batches, desc="parity", unit="batch", disable=not options.progress)
    for batch in bar:
        items = [inputs[i] for i in batch]
        encoded = tokenizer(
            [item.text for item in items],
            padding=True,
            truncation=True,
            max_length=manifest.max_input_length,
            return_tensors="np",
        )
        input_ids = encoded["input_ids"].astype(np.int64)
        attention_mask = encoded["attention_mask"].astype(np.int64)
        limit = items[0].max_new_tokens
        bar.set_postfix_str("pytorch")
        reference, reference_logits = _reference_generate(
            model, input_ids, attention_mask, limit, special
        )
        if len(headroom_samples) < 8:  # one per batch: predict, explain and evaluate inputs
            row = 0
            decoder_ids = np.array([[special.decoder_start, *reference[row]]], dtype=np.int64)
            length = int(attention_mask[row].sum())
            headroom_samples.append(
                (
                    input_ids[row : row + 1, :length],
                    attention_mask[row : row + 1, :length],
                    decoder_ids,
                )
            )
        correct_by_row: list[bool | None] = []
        for item, tokens in zip(items, reference, strict=True):
            correct = _judge(task, tokenizer, item, tokens)
            correct_by_row.append(correct)
            if correct is not None:
                reference_labelled += 1
                reference_correct += correct
        for key, runtime in runtimes.items():
            bar.set_postfix_str(key)
            if isinstance(runtime, OnnxSeq2Seq):
                record, diffs = parity.step_diff_recorder(reference_logits, limit)
                outputs = runtime.generate(input_ids, attention_mask, limit, on_step=record)
                per_row = [diffs[r].tolist() for r in range(len(items))]
            else:
                per_row = [[] for _ in items]

                def keep(
                    row: int,
                    logits: np.ndarray,
                    per_row: list = per_row,
                    reference_logits: np.ndarray = reference_logits,
                ) -> None:
                    per_row[row] = parity.row_diffs(reference_logits[row], logits)

                outputs = runtime.generate(
                    input_ids,
                    attention_mask,
                    limit,
                    vocab_size=reference_logits.shape[-1],
                    on_row_logits=keep,
                )
            for row, (index, item) in enumerate(zip(batch, items, strict=True)):
                results[key].add(
                    index,
                    item,
                    reference[row],
                    outputs[row],
                    reference_logits[row],
                    per_row[row],
                    _judge(task, tokenizer, item, outputs[row]),
                )
    bar.close()

    reference_accuracy = reference_correct / reference_labelled if reference_labelled else None
    if reference_accuracy is None and len(runtimes) > 1:
        logger.warning(
            "no labelled data: the accuracy cost of the reduced variants is not measured and "
            "--max-accuracy-drop is not applied; pass --data with labels to measure it"
        )
    variants: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for key, result in results.items():
        entry = {**runtime_info[key], **result.summary()}
        name = key.split("/", 1)[1]
        checks, problems = _gates(key, name, entry, result, reference_accuracy, options)
        if key.startswith("onnx/"):
            entry["structure"] = structures.get(name)
        if key == "onnx/fp16-mixed":
            headroom = parity.fp16_activation_peak(
                staging / "work" / "optimum", headroom_samples, threads=options.threads
            )
            entry["fp16_headroom"] = headroom
            checks["activations_within_fp16"] = headroom["peak_abs_activation"] < parity.FP16_MAX
            if not checks["activations_within_fp16"]:
                problems.append(
                    f"{key}: an activation computed in fp16 reaches "
                    f"{headroom['peak_abs_activation']:.4g} ({headroom['tensor']}), beyond fp16's "
                    f"{parity.FP16_MAX:.0f}; it would overflow on the GPU"
                )
            if entry["verified_on"] == "cpu":
                entry["note"] = (
                    "parity measured on CPU: ONNX Runtime's CPU provider runs the fp16 weights "
                    "but computes the ops it has no fp16 kernel for in fp32, so fp16 arithmetic "
                    "(and overflow) is not exercised here; fp16_headroom checks the activation "
                    "range instead, and bench/gpu_runtimes.sh measures parity on a GPU"
                )
        entry["checks"] = checks
        entry["passed"] = not problems
        entry["failures"] = problems
        failures += problems
        variants[key] = entry

    return {
        "format_version": REPORT_FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mindmirror_version": __version__,
        "model": {
            "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "model_sha256": manifest.files.get("model.safetensors"),
        },
        "data": description,
        "settings": {
            "decoding": "greedy",
            "batch_size": options.batch_size,
            "max_new_tokens": {
                "predict": manifest.generation.max_new_tokens_predict,
                "explain": manifest.generation.max_new_tokens_explain,
            },
            "max_input_length": manifest.max_input_length,
            "fp32_atol": options.fp32_atol,
            "max_accuracy_drop_points": options.max_accuracy_drop,
        },
        "pytorch": {
            "runtime": f"torch {torch.__version__}, transformers {transformers.__version__}",
            "accuracy": reference_accuracy,
            "labelled": reference_labelled,
        },
        "variants": variants,
        "passed": not failures,
        "failures": failures,
    }


def _judge(task: Task, tokenizer: Any, item: Any, tokens: list[int]) -> bool | None:
    """Whether a ``predict`` output is the gold label (``None`` when there is no gold)."""
    from mindmirror.export.parity import predicted_label

    if item.kind != "predict" or item.gold is None:
        return None
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return task.is_correct(predicted_label(task, text, item.example), item.gold)


def _gates(
    key: str,
    name: str,
    entry: dict[str, Any],
    result: Any,
    reference_accuracy: float | None,
    options: ExportOptions,
) -> tuple[dict[str, Any], list[str]]:
    """The pass/fail checks of one variant, and the problems found."""
    checks: dict[str, Any] = {}
    problems: list[str] = []
    if entry["accuracy"] is not None and reference_accuracy is not None:
        entry["accuracy_delta_points"] = round((entry["accuracy"] - reference_accuracy) * 100, 4)
    if key == "onnx/fp32":
        diff = entry["max_abs_logit_diff"] or 0.0
        checks["max_abs_logit_diff_within_atol"] = diff <= options.fp32_atol
        if diff > options.fp32_atol:
            problems.append(
                f"{key}: logits differ from PyTorch by up to {diff:.3g} "
                f"(allowed {options.fp32_atol:g}); the export is not faithful"
            )
        # A different greedy token is only acceptable where PyTorch itself had a tie.
        tie = 2 * options.fp32_atol
        checks["greedy_outputs_identical"] = result.divergence_count == 0
        checks["divergences_are_ties"] = result.max_divergence_gap <= tie
        if result.max_divergence_gap > tie:
            problems.append(
                f"{key}: {result.divergence_count} of {entry['sequences']} greedy outputs differ "
                f"from PyTorch (first: {entry['divergences'][:1]}); the export is not faithful"
            )
    elif "accuracy_delta_points" in entry:
        drop = -entry["accuracy_delta_points"]
        checks["accuracy_drop_within_limit"] = drop <= options.max_accuracy_drop
        if drop > options.max_accuracy_drop:
            problems.append(
                f"{key}: accuracy {entry['accuracy']:.4f} is {drop:.2f} points below PyTorch's "
                f"{reference_accuracy:.4f} (allowed {options.max_accuracy_drop:g}); drop the "
                f"variant (--variants / --ctranslate2-variants) or raise --max-accuracy-drop"
            )
    else:
        checks["accuracy_drop_within_limit"] = None  # no labelled data: not measured
    return checks, problems


# ----- write -----------------------------------------------------------------------------------
def _exports_record(report: dict[str, Any], options: ExportOptions, opset: int) -> dict[str, Any]:
    variants = report["variants"]

    def summary(key: str) -> dict[str, Any]:
        entry = variants[key]
        record = {
            "path": key,
            "devices": entry["devices"],
            "precision": entry["precision"],
            "exact_match": entry["exact_match"],
            "token_agreement": entry["token_agreement"],
            "max_abs_logit_diff": entry["max_abs_logit_diff"],
            "verified_on": entry["verified_on"],
        }
        if entry["accuracy"] is not None:
            record["accuracy"] = entry["accuracy"]
        return record

    onnx_variants = {name: summary(f"onnx/{name}") for name in options.variants}
    recommended_cuda = "fp32"
    reduced = variants.get("onnx/fp16-mixed")
    # Recommend reduced precision on CUDA only once it has been verified on CUDA.
    if reduced and reduced["passed"] and reduced["verified_on"] == "cuda":
        recommended_cuda = "fp16-mixed"
    record: dict[str, Any] = {
        "onnx": {
            "opset": opset,
            "exported_at": report["created_at"],
            "io_dtype": "float32",
            "parity_report": "onnx/parity.json",
            "variants": onnx_variants,
            "recommended": {
                "cpu": "int8" if "int8" in onnx_variants else "fp32",
                "cuda": recommended_cuda,
            },
        }
    }
    if report["pytorch"]["accuracy"] is not None:
        record["onnx"]["pytorch_accuracy"] = report["pytorch"]["accuracy"]
    if options.ctranslate2:
        record["ctranslate2"] = {
            "vocabulary": "shared_vocabulary.json",
            "variants": {
                name: {**summary(f"ctranslate2/{name}"), "quantization": CT2_VARIANTS[name]}
                for name in options.ctranslate2
            },
        }
    return record


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _swap_into_place(bundle: Path, staging: Path, names: Sequence[str]) -> None:
    """Replace ``bundle/<name>`` with ``staging/<name>`` for each name; retire the rest of the
    previous export. Old directories are moved aside (into staging) before the new ones are
    moved in, so at every instant each path holds one complete version."""
    retired = staging / "retired"
    retired.mkdir()
    for name in EXPORT_DIRS:
        if (bundle / name).exists():
            os.replace(bundle / name, retired / name)
        if name in names:
            os.replace(staging / name, bundle / name)


def run_export(options: ExportOptions) -> ExportResult:
    """Export ``options.bundle``; see the module docstring for the steps and guarantees."""
    bundle = options.bundle
    # Every check reads only: a refused export writes nothing, not even its lock file.
    manifest, task, _config = _validate(options)
    with _export_lock(bundle):
        _remove_stale_staging(bundle)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=bundle))
        try:
            return _export_into(options, manifest, task, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _export_into(
    options: ExportOptions, manifest: Manifest, task: Task, staging: Path
) -> ExportResult:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a bundle is self-contained
    from mindmirror.export.convert import (
        build_variant,
        check_variant_structure,
        export_with_optimum,
    )
    from mindmirror.export.ct2 import convert_ctranslate2
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    bundle = options.bundle
    work = staging / "work"
    optimum_dir = work / "optimum"
    logger.info("exporting %s to ONNX with optimum-onnx (text2text-generation-with-past)", bundle)
    # optimum patches the model it traces (configs, forward); the PyTorch reference below is a
    # separate, untouched instance.
    traced = T5ForConditionalGeneration.from_pretrained(bundle, use_safetensors=True).eval()
    opset = export_with_optimum(traced, optimum_dir, options.opset)
    del traced
    gc.collect()
    structures = {}
    for name in options.variants:
        logger.info("building ONNX variant %s", name)
        target = staging / "onnx" / name
        build_variant(name, optimum_dir, target, work)
        structures[name] = check_variant_structure(name, target, staging / "onnx" / "fp32")
    for name in options.ctranslate2:
        logger.info("converting to CTranslate2 (%s)", name)
        convert_ctranslate2(bundle, staging / "ctranslate2" / name, name)

    model = T5ForConditionalGeneration.from_pretrained(bundle, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    report = _verify(options, manifest, task, model, tokenizer, staging, structures)
    if options.report is not None:
        _write_json(options.report, report)
    if not report["passed"]:
        failed = bundle / FAILED_REPORT_NAME
        _write_json(failed, report)
        raise ParityError(
            "export refused, the bundle is unchanged: "
            + "; ".join(report["failures"])
            + f" (full report: {failed})"
        )

    _write_json(staging / "onnx" / "parity.json", report)
    shutil.rmtree(work)
    names = ["onnx"] + (["ctranslate2"] if options.ctranslate2 else [])
    # The model files must still be the ones verified at the start: the manifest about to be
    # written re-checksums whatever is on disk.
    model_files = {k: v for k, v in manifest.files.items() if not _owned_by_export(k)}
    verify_checksums(bundle, manifest.model_copy(update={"files": model_files}))
    _swap_into_place(bundle, staging, names)
    # Nothing of the staging directory may be left when the manifest checksums the bundle.
    shutil.rmtree(staging)
    record = _exports_record(report, options, opset)
    written = write_manifest(bundle, manifest.model_copy(update={"exports": record}))
    (bundle / FAILED_REPORT_NAME).unlink(missing_ok=True)
    logger.info("export written: %s", ", ".join(f"{n}/" for n in names))
    return ExportResult(
        manifest=written,
        report=report,
        written=sorted(k for k in written.files if _owned_by_export(k)),
    )
