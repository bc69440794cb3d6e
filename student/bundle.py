"""The student bundle: a directory every stage after training reads, and its manifest.

::

    bundle/
      mindmirror.json            # Manifest, below
      config.json generation_config.json model.safetensors
      tokenizer files (tokenizer.json, spiece.model, ...)
      onnx/                      # added by `mindmirror export`

``mindmirror.json`` records what the student is (task, label space, prefixes, lengths,
generation defaults), where it came from (provenance), how well it does (evaluations) and the
sha256 of every file. :func:`load_manifest` verifies those checksums, so a truncated copy or a
tampered file is refused before anything reads it. Bundles are written to a temporary sibling
directory and renamed into place (:func:`atomic_directory`), so a half-written bundle never looks
complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_write_text, readable_by_all
from mindmirror.student.formats import DEFAULT_PREFIXES, Prefixes
from mindmirror.student.verdict_scores import VerdictCalibration
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BundleError",
    "EvaluationResult",
    "GenerationDefaults",
    "LabelSource",
    "Manifest",
    "Provenance",
    "atomic_directory",
    "compute_checksums",
    "load_manifest",
    "sha256_file",
    "verify_checksums",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "mindmirror.json"
# Never checksummed or read as part of the bundle: OS and editor litter.
_IGNORED_NAMES = {".DS_Store", MANIFEST_NAME}


class BundleError(MindmirrorError, RuntimeError):
    """The bundle is missing, malformed, or a file does not match its recorded checksum."""


class GenerationDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens_predict: int = Field(32, ge=1)
    max_new_tokens_explain: int = Field(256, ge=1)
    num_beams: int = Field(1, ge=1)


#: Where a student's stage-2 labels came from: ``teacher`` (each chain of thought's own answer,
#: the paper's), ``majority`` / ``weighted-majority`` (the question's vote over the teacher's
#: chains, plain or weighed by the teacher's verdicts) or ``human``. Defined here, in the
#: contract, because the manifest records it; ``mindmirror distill`` takes the same values.
LabelSource = Literal["teacher", "majority", "weighted-majority", "human"]


class Provenance(BaseModel):
    """How the student was made. Everything needed to reproduce or audit a training run."""

    model_config = ConfigDict(extra="allow")

    base_model: str | None = None
    teacher: str | None = None
    num_cots: int | None = None
    num_self_evaluations: int | None = None
    self_evaluation: bool = False
    rationale_weight: float | None = None  # lambda
    loss_form: Literal["lambda", "alpha"] | None = None
    label_source: LabelSource | None = None
    seed: int | None = None
    data_fingerprint: str | None = None
    training_steps: dict[str, int] = Field(default_factory=dict)
    mindmirror_version: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class EvaluationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str
    data_fingerprint: str
    examples: int
    accuracy: float
    per_class: dict[str, dict[str, float]] | None = None
    runtime: str = "pytorch"
    #: what was scored: the task answers, or the self-evaluation verdicts against the teacher's
    target: Literal["task", "self_evaluation"] = "task"
    #: share of outputs that parse as a label (or verdict) at all
    valid_rate: float | None = None
    evaluated_at: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    task: str
    label_space: list[str] | None = None
    prefixes: Prefixes = DEFAULT_PREFIXES
    self_evaluation: bool = False
    max_input_length: int = Field(512, ge=8)
    max_label_length: int = Field(32, ge=1)
    max_rationale_length: int = Field(256, ge=1)
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    #: how the student's verdict scores become a probability and a verdict (fitted by
    #: ``distill`` on held-out reasonings; None: uncalibrated, see
    #: :mod:`mindmirror.student.verdict_scores`)
    verdict_calibration: VerdictCalibration | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    evaluations: list[EvaluationResult] = Field(default_factory=list)
    #: export metadata written by ``mindmirror export`` (variants, opsets, parity summary)
    exports: dict[str, Any] = Field(default_factory=dict)
    #: relative path -> sha256 of every file in the bundle but the manifest itself
    files: dict[str, str] = Field(default_factory=dict)


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(root: Path) -> list[Path]:
    # Hidden files *and everything under hidden directories* are not part of the bundle: that
    # is where writers stage their work (``atomic_directory``'s temporaries, an interrupted
    # export's ``.export-*``), which must never end up in the checksums.
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.name not in _IGNORED_NAMES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def compute_checksums(root: str | Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (POSIX relative paths), the manifest excluded."""
    root = Path(root)
    return {path.relative_to(root).as_posix(): sha256_file(path) for path in _bundle_files(root)}


def write_manifest(root: str | Path, manifest: Manifest) -> Manifest:
    """Checksum the directory's files into ``manifest`` and write it (atomically)."""
    root = Path(root)
    manifest = manifest.model_copy(update={"files": compute_checksums(root)})
    atomic_write_text(root / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
    return manifest


def verify_checksums(root: Path, manifest: Manifest, only: str | None = None) -> None:
    """Raise :class:`BundleError` naming the first missing or mismatched file.

    ``only`` restricts the check to paths under that prefix (e.g. ``"onnx/"``), for readers
    that load only part of a bundle.
    """
    for relative, expected in manifest.files.items():
        if only is not None and not relative.startswith(only):
            continue
        path = root / relative
        if not path.is_file():
            raise BundleError(
                f"bundle {root}: file {relative} is listed in the manifest but missing"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle {root}: checksum mismatch for {relative} (expected {expected[:12]}..., "
                f"found {actual[:12]}...); the file was modified or corrupted"
            )


def load_manifest(root: str | Path, verify: bool | str = True) -> Manifest:
    """Read a bundle's manifest and (by default) verify every file's checksum.

    ``verify`` may be a path prefix such as ``"onnx/"`` to check only that part.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root}")
    if not path.is_file():
        raise BundleError(f"{root} is not a mindmirror bundle: {MANIFEST_NAME} is missing")
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise BundleError(f"{path} is not a valid manifest: {problems}") from None
    if manifest.format_version > FORMAT_VERSION:
        raise BundleError(
            f"{path} has format version {manifest.format_version}; this mindmirror reads up to "
            f"{FORMAT_VERSION}. Upgrade mindmirror."
        )
    if not manifest.files:
        raise BundleError(f"{path} lists no files; the bundle is incomplete")
    if verify:
        verify_checksums(root, manifest, only=verify if isinstance(verify, str) else None)
    return manifest


@contextlib.contextmanager
def atomic_directory(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` when the block succeeds.

    The temporary directory is a hidden sibling of ``target`` (same filesystem, so the final
    rename is atomic). If the block raises or the process dies, ``target`` is untouched; a
    leftover temporary directory is hidden and removed on the next attempt's failure path.
    Without ``force`` an existing ``target`` is refused before any work starts.
    """
    target = Path(target)
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    readable_by_all(tmp)
    try:
        yield tmp
        if target.exists():
            # Move the old one aside first so that at every instant one complete copy exists.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
