"""The student as the inference layer sees it: texts ↔ ids, task semantics, a backend behind it.

:meth:`StudentModel.open` does every check that needs no model in memory (manifest and
checksums, tokenizer, backend choice, limits against the manifest), so a bad bundle or setting
fails before the server binds its port. :meth:`StudentModel.setup` and :meth:`warmup` then load
and exercise the runtime on the model worker thread while the server already answers
``/healthz``.

For rationale rows of arithmetic tasks the model also lends the task's calculator
(:meth:`~mindmirror.student.tasks.base.Task.calculator`) to the decoding loop as a
:data:`~mindmirror.engine.decoding.Forcer`: :class:`CalculatorForcer` turns its text into ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindmirror.engine.ids import read_model_ids
from mindmirror.service.backends import Backend, BackendSpec, Row, create, resolve, verify_files
from mindmirror.service.rejections import LimitExceeded
from mindmirror.service.settings import Settings, SettingsError
from mindmirror.service.text import TextCodec
from mindmirror.student.bundle import MANIFEST_NAME, Manifest, load_manifest, sha256_file
from mindmirror.student.tasks import Task, UnknownTaskError, get_task
from mindmirror.student.tasks.base import NO_CHECK, Example, RationaleCheck, TaskDataError
from mindmirror.student.verdict_scores import (
    UNCALIBRATED,
    VerdictCalibration,
    VerdictScore,
    score_verdict,
    verdict_token_ids,
)

__all__ = ["CalculatorForcer", "Limits", "StudentModel", "resolve_limits"]

logger = logging.getLogger("mindmirror.service")


@dataclass(frozen=True)
class Limits:
    max_input_tokens: int
    truncate_input: bool
    max_new_tokens_predict: int
    max_new_tokens_explain: int


def resolve_limits(settings: Settings, manifest: Manifest) -> Limits:
    """Settings that depend on the bundle, checked against what the student was trained for."""
    trained = manifest.max_input_length
    max_input = settings.max_input_tokens or trained
    if max_input > trained:
        raise SettingsError(
            f"MINDMIRROR_MAX_INPUT_TOKENS={max_input} exceeds the {trained} tokens the student "
            "was trained with (manifest max_input_length); longer inputs are outside what it "
            "has learnt and cost unbounded memory"
        )
    explain = settings.max_new_tokens_explain or manifest.generation.max_new_tokens_explain
    predict = manifest.generation.max_new_tokens_predict
    worst_row = max_input + max(explain, predict)
    if settings.max_batch_tokens < worst_row:
        raise SettingsError(
            f"MINDMIRROR_MAX_BATCH_TOKENS={settings.max_batch_tokens} is smaller than one "
            f"request at the limits ({max_input} input + {max(explain, predict)} new tokens = "
            f"{worst_row}); raise it or lower MINDMIRROR_MAX_INPUT_TOKENS / "
            "MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN"
        )
    return Limits(max_input, settings.truncate_input, predict, explain)


class _PassThroughTask:
    """Stands in for a task this installation does not know: labels are returned as they are."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"{name} (task definition not installed; labels are returned raw)"

    def read_label(self, text: str, example: Any = None) -> str | None:
        return text.strip() or None

    def answer_value(self, label: str) -> Any:
        return label

    def format_cot(self, rationale: str, label: str, example: Any = None) -> str:
        return f"{rationale.strip()} The answer is {label}.".strip()

    has_calculator = False

    def check_rationale(
        self, rationale: str, label: str | None, example: Any = None
    ) -> RationaleCheck:
        return NO_CHECK


class CalculatorForcer:
    """A task's calculator as a decoding :data:`~mindmirror.engine.decoding.Forcer`: when a
    rationale's text ends with "a op b =", the ids of the result the calculator writes.

    Called after every token of the row, so it decodes the row only when the last token can end
    an "=" (:meth:`TextCodec.ends_with`), a few times per rationale. Stateless: one instance
    serves every row and thread."""

    def __init__(self, codec: TextCodec, calculator: Callable[[str], str | None]) -> None:
        self.codec = codec
        self.calculator = calculator

    def __call__(self, ids: Sequence[int]) -> list[int]:
        if not ids or not self.codec.ends_with(ids, "="):
            return []
        text = self.codec.decode([ids])[0]
        forced = self.calculator(text)
        return self.codec.continuation(ids, text, forced) if forced else []


def _calculator_state(
    wanted: bool, task: Task | _PassThroughTask, backend: Any
) -> tuple[bool, str]:
    """Whether the calculator runs, and why (not). A backend that does not say it can force
    tokens cannot."""
    if not task.has_calculator:
        return False, f"task {task.name} has no calculator"
    if not wanted:
        return False, "turned off (MINDMIRROR_CALCULATOR=false)"
    if not getattr(backend, "supports_forcing", False):
        return False, f"the {backend.name} backend cannot force tokens"
    return True, "fills in the result of each arithmetic step of a rationale"


class StudentModel:
    """One loaded bundle: manifest, task, tokenizer and backend.

    ``calculator``: lend the task's calculator to rationale rows, where the task has one and
    the backend can force tokens (:attr:`calculator` says whether it runs, and
    :attr:`calculator_note` why not)."""

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        task: Task | _PassThroughTask,
        codec: TextCodec,
        backend: Backend[Any, Any],
        limits: Limits,
        calculator: bool = False,
    ) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.task = task
        self.codec = codec
        self.backend = backend
        self.limits = limits
        self.manifest_sha256 = sha256_file(bundle / MANIFEST_NAME)
        #: the verdict words' first tokens, scored by /v1/evaluate and explain's verdicts
        self.verdict_tokens: tuple[int, int, int] | None = None
        if manifest.self_evaluation:
            self.verdict_tokens = verdict_token_ids(lambda text: codec.encode([text])[0])
        self.calibration: VerdictCalibration = manifest.verdict_calibration or UNCALIBRATED
        self.calculator, self.calculator_note = _calculator_state(calculator, task, backend)
        self._forcer = CalculatorForcer(codec, task.calculator) if self.calculator else None

    @classmethod
    def open(
        cls, settings: Settings, backend_options: dict[str, Any] | None = None
    ) -> StudentModel:
        bundle = settings.bundle.expanduser().resolve()
        # Checksums of the files this process reads are verified below, file by file (the
        # serving image may not even carry the training weights' runtime).
        manifest = load_manifest(bundle, verify=False)
        text_files = [
            name
            for name in ("config.json", "tokenizer.json", "tokenizer_config.json")
            if (bundle / name).is_file() or name in manifest.files
        ]
        verify_files(bundle, manifest, text_files, "tokenizer/config")
        limits = resolve_limits(settings, manifest)
        ids = read_model_ids(bundle)
        codec = TextCodec(bundle, ids)
        spec: BackendSpec = resolve(
            bundle,
            manifest,
            ids,
            backend=settings.backend,
            device=settings.device,
            variant=settings.variant,
            num_threads=settings.num_threads,
            options=backend_options,
        )
        try:
            task: Task | _PassThroughTask = get_task(manifest.task)
        except UnknownTaskError:
            logger.warning("task %r is not installed here; labels are returned raw", manifest.task)
            task = _PassThroughTask(manifest.task)
        if manifest.generation.num_beams > 1:
            logger.warning(
                "the manifest asks for beam search (num_beams=%d); the service decodes greedily",
                manifest.generation.num_beams,
            )
        model = cls(bundle, manifest, task, codec, create(spec, codec), limits, settings.calculator)
        if settings.calculator and task.has_calculator and not model.calculator:
            logger.warning("/v1/explain runs without the calculator: %s", model.calculator_note)
        return model

    # ----- on the model worker -----------------------------------------------------------------
    def setup(self) -> None:
        started = time.perf_counter()
        self.backend.setup()
        logger.info(
            "model loaded",
            extra={
                "backend": self.backend.name,
                "variant": self.backend.variant,
                "device": self.backend.device,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def warmup(self, batch_size: int) -> None:
        """Run the shapes the service will run (one row, then a full batch) once, so the first
        request does not pay for lazy initialisation (allocator arenas, CUDA kernels)."""
        started = time.perf_counter()
        text = self.manifest.prefixes.cot_input(
            "warm up the model with a short question", "predict"
        )
        ids = self.codec.encode([text])[0][: self.limits.max_input_tokens]
        self.backend([Row(list(ids), 2)])
        self.backend([Row(list(ids), 2) for _ in range(batch_size)])
        logger.info("model warmed up", extra={"seconds": round(time.perf_counter() - started, 3)})

    def generate(self, rows: Sequence[Row]) -> list[list[int]]:
        return self.backend(rows)

    def score_verdicts(self, rows: Sequence[Row]) -> list[list[float]]:
        """The verdict words' first-token log-probabilities for self-evaluation inputs."""
        if self.verdict_tokens is None:
            raise RuntimeError("this student has no self-evaluation to score")
        return self.backend.score_first(rows, self.verdict_tokens)

    def close(self) -> None:
        self.backend.close()

    # ----- text ↔ ids (event loop side; tokenizers is fast and releases the GIL) --------------
    def encode_inputs(self, texts: Sequence[str], fields: Sequence[str]) -> list[list[int]]:
        """Tokenize inputs built from request fields, applying the length rule: too long is
        :class:`LimitExceeded` naming the field (``fields``), or cut when the settings say so."""
        encoded = self.codec.encode(texts)
        limit = self.limits.max_input_tokens
        for position, ids in enumerate(encoded):
            if len(ids) <= limit:
                continue
            if self.limits.truncate_input:
                encoded[position] = self.codec.truncate(ids, limit)
            else:
                raise LimitExceeded(
                    fields[position],
                    f"is {len(ids)} tokens with the task prefix; the limit is {limit} "
                    "(MINDMIRROR_MAX_INPUT_TOKENS; MINDMIRROR_TRUNCATE_INPUT=true cuts instead)",
                )
        return encoded

    def encode_internal(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize inputs the service composed itself (explain's verdict inputs): one over the
        limit is cut whatever MINDMIRROR_TRUNCATE_INPUT says, as no request field is to blame
        for a long sampled rationale."""
        limit = self.limits.max_input_tokens
        return [self.codec.truncate(ids, limit) for ids in self.codec.encode(texts)]

    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        return self.codec.decode(sequences)

    # ----- task semantics ----------------------------------------------------------------------
    def read_label(self, text: str) -> tuple[str | None, Any]:
        """(normalized label or None, the task's answer value or None) of a generated label."""
        label = self.task.read_label(text)
        if label is None:
            return None, None
        try:
            return label, self.task.answer_value(label)
        except TaskDataError:
            return label, None

    def format_cot(self, rationale: str, label: str) -> str:
        return self.task.format_cot(rationale, label)

    def read_scores(self, logprobs: Sequence[float]) -> VerdictScore:
        """One scored row, read with the bundle's calibration."""
        return score_verdict(logprobs, self.calibration)

    def rationale_forcer(self) -> CalculatorForcer | None:
        """The forcer of a rationale row: the calculator, when it runs."""
        return self._forcer

    def check_rationale(self, question: str, rationale: str, label: str | None) -> RationaleCheck:
        """Whether ``rationale`` supports ``label`` (the task's rule), for a request's question
        (a CQA question carries its choices)."""
        return self.task.check_rationale(rationale, label, Example(id="request", question=question))

    def info(self) -> dict[str, Any]:
        manifest = self.manifest
        provenance = manifest.provenance
        return {
            "task": manifest.task,
            "description": getattr(self.task, "description", ""),
            "label_space": manifest.label_space,
            "self_evaluation": manifest.self_evaluation,
            "verdict_calibration": (
                self.calibration.model_dump(mode="json") if manifest.self_evaluation else None
            ),
            "backend": self.backend.name,
            "variant": self.backend.variant,
            "device": self.backend.device,
            "max_input_tokens": self.limits.max_input_tokens,
            "truncate_input": self.limits.truncate_input,
            "max_new_tokens_predict": self.limits.max_new_tokens_predict,
            "max_new_tokens_explain": self.limits.max_new_tokens_explain,
            "calculator": {"enabled": self.calculator, "note": self.calculator_note},
            "provenance": {
                key: getattr(provenance, key)
                for key in (
                    "base_model",
                    "teacher",
                    "num_cots",
                    "num_self_evaluations",
                    "rationale_weight",
                    "loss_form",
                    "label_source",
                    "created_at",
                    "mindmirror_version",
                )
            },
            "evaluations": [
                {
                    "split": e.split,
                    "examples": e.examples,
                    "accuracy": e.accuracy,
                    "runtime": e.runtime,
                }
                for e in manifest.evaluations
            ],
            "exports": {
                runtime: sorted((record.get("variants") or {}).keys())
                for runtime, record in manifest.exports.items()
                if isinstance(record, dict)
            },
            "manifest_sha256": self.manifest_sha256,
        }
