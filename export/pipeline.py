"""``mindmirror export``: validate -> convert -> variants -> verify (parity) -> write.

The verify step (decoding with PyTorch and every variant, the gates) is
:mod:`mindmirror.export.verify`; this module validates, builds and writes.

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
from pathlib import Path
from typing import Any

from mindmirror.engine.ids import read_model_config
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

    config = read_model_config(bundle)
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
    from mindmirror.export.verify import verify
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
    report = verify(options, manifest, task, model, tokenizer, staging, structures)
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
