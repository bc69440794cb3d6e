"""The parity check: does an exported variant say what the trained PyTorch model says?

For every input the PyTorch model decodes greedily (transformers ``generate``, the plain greedy
search the manifest's generation defaults describe) and every variant decodes the same input
with its own runtime. Per variant the report gives:

- ``exact_match``: the fraction of inputs whose whole greedy output is token-for-token the same;
- ``token_agreement``: tokens before the first difference over the longer output's length,
  summed over inputs (1.0 = identical everywhere);
- ``max_abs_logit_diff``: the largest |logit - PyTorch logit| over the whole vocabulary at every
  step where both had been fed the same tokens (the whole output when they agree; up to and
  including the first differing token otherwise -- after that they are decoding different
  texts and logits are not comparable);
- ``accuracy`` (labelled data only): the task's own ``is_correct`` on the ``predict`` outputs,
  next to PyTorch's, and the delta in points;
- ``divergences``: the first few inputs where the output differs, with the step, both tokens
  and the PyTorch logit gap between them (a gap within the fp32 tolerance is a numerical tie).

fp32 must match: every greedy output identical (divergences allowed only at numerical ties)
and ``max_abs_logit_diff`` within ``fp32_atol``. Reduced-precision variants must keep accuracy
within ``max_accuracy_drop`` points of PyTorch's when labels are given.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.bundle import Manifest
from mindmirror.student.distillation import (
    DistillationRecord,
    fingerprint,
    load_distillation_data,
    load_task_examples,
)
from mindmirror.student.jsonl import DataFileError, iter_jsonl
from mindmirror.student.tasks import Example, Task

if TYPE_CHECKING:
    import numpy as np
    from mindmirror.engine.decoding import StepObserver

__all__ = [
    "ParityInput",
    "VariantParity",
    "build_inputs",
    "common_prefix",
    "fp16_activation_peak",
]

logger = logging.getLogger(__name__)

#: activations at or beyond this are attention-mask sentinels (finfo.min), not values
_MASK_SENTINEL = 1e30
FP16_MAX = 65504.0
_MAX_DIVERGENCES_LISTED = 5


@dataclass(frozen=True)
class ParityInput:
    kind: str  # predict | explain | evaluate:predict | evaluate:explain
    text: str
    max_new_tokens: int
    gold: str | None = None
    example: Example | None = None


# ----- inputs ----------------------------------------------------------------------------------
def _is_distillation_file(path: Path) -> bool:
    for _, record in iter_jsonl(path):
        return "cots" in record and "question" in record
    return False


def _cot_text(task: Task, record: DistillationRecord) -> str | None:
    for cot in record.cots:
        if cot.answer is not None:
            return task.format_cot(cot.rationale, cot.answer, record.example())
    return None


def build_inputs(
    manifest: Manifest,
    task: Task,
    data: Path | None,
    split: str = "test",
    max_examples: int = 100,
    max_explain: int = 16,
    seed: int = 0,
    vocabulary: Sequence[str] = (),
) -> tuple[list[ParityInput], dict[str, Any]]:
    """The inputs of the parity check, and a description of where they came from.

    ``data`` is task JSONL (``{"id", "input", "label"}`` or the task's own fields), a
    distillation set, or a distilling-step-by-step / Mind's Mirror folder (``split`` picks the
    split). Without data the inputs are generated: the task's few-shot exemplars (real task
    text) plus a few seeded random strings of the tokenizer's ``vocabulary``.
    """
    prefixes = manifest.prefixes
    predict_limit = manifest.generation.max_new_tokens_predict
    explain_limit = manifest.generation.max_new_tokens_explain
    examples: list[Example] = []
    reasonings: list[tuple[str, str]] = []  # (question, chain of thought) for self-evaluation
    description: dict[str, Any]
    if data is not None:
        data = Path(data)
        if data.is_dir() or _is_distillation_file(data):
            records = load_distillation_data(data, split=split, task=task)
            examples = [record.example() for record in records]
            for record in records:
                cot = _cot_text(task, record)
                if cot is not None:
                    reasonings.append((record.question, cot))
            kind = "distillation set"
        else:
            examples = load_task_examples(task, data)
            kind = "task data"
        examples = examples[:max_examples]
        description = {
            "source": str(data),
            "kind": kind,
            "split": split if data.is_dir() else None,
            "fingerprint": fingerprint(examples),
            "examples": len(examples),
            "labelled": sum(e.label is not None for e in examples),
        }
    else:
        examples = [
            Example(id=f"exemplar-{i}", question=ex.question)
            for i, ex in enumerate(task.cot_exemplars)
        ]
        rng = random.Random(seed)  # noqa: S311 -- reproducible inputs, not secrets
        words = [w for w in vocabulary if w.strip("▁").isalnum()] or ["x"]
        for i in range(max(0, min(8, max_examples - len(examples)))):
            text = " ".join(rng.choice(words).strip("▁") for _ in range(rng.randint(6, 30)))
            examples.append(Example(id=f"random-{i}", question=text))
        examples = examples[:max_examples]
        description = {
            "source": "generated",
            "kind": "task exemplars and seeded random text",
            "seed": seed,
            "fingerprint": fingerprint(examples),
            "examples": len(examples),
            "labelled": 0,
        }
    if not reasonings:
        reasonings = [(ex.question, ex.reasoning) for ex in task.self_eval_exemplars]

    inputs = [
        ParityInput(
            "predict", prefixes.cot_input(ex.question, "predict"), predict_limit, ex.label, ex
        )
        for ex in examples
    ]
    inputs += [
        ParityInput("explain", prefixes.cot_input(ex.question, "explain"), explain_limit, None, ex)
        for ex in examples[:max_explain]
    ]
    if manifest.self_evaluation:
        inputs += [
            ParityInput(
                "evaluate:predict", prefixes.self_eval_input(q, r, "predict"), predict_limit
            )
            for q, r in reasonings[:max_explain]
        ]
        inputs += [
            ParityInput(
                "evaluate:explain", prefixes.self_eval_input(q, r, "explain"), explain_limit
            )
            for q, r in reasonings[: max(1, max_explain // 2)]
        ]
    if not inputs:
        raise DataFileError("no parity inputs: the data and the task's exemplars are empty")
    description["inputs"] = {
        kind: sum(i.kind == kind for i in inputs) for kind in dict.fromkeys(i.kind for i in inputs)
    }
    return inputs, description


# ----- comparison ------------------------------------------------------------------------------
def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two outputs share."""
    for position, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return position
    return min(len(a), len(b))


@dataclass
class _Counts:
    sequences: int = 0
    exact: int = 0
    agreeing_tokens: int = 0
    compared_tokens: int = 0

    def add(self, reference: Sequence[int], output: Sequence[int]) -> int:
        prefix = common_prefix(reference, output)
        self.sequences += 1
        self.exact += list(reference) == list(output)
        self.agreeing_tokens += prefix
        self.compared_tokens += max(len(reference), len(output), 1)
        return prefix

    def summary(self) -> dict[str, Any]:
        return {
            "sequences": self.sequences,
            "exact_match": self.exact / self.sequences if self.sequences else None,
            "token_agreement": (
                self.agreeing_tokens / self.compared_tokens if self.compared_tokens else None
            ),
        }


@dataclass
class VariantParity:
    """Running parity of one variant against the PyTorch reference."""

    name: str
    total: _Counts = field(default_factory=_Counts)
    by_kind: dict[str, _Counts] = field(default_factory=dict)
    max_abs_logit_diff: float = 0.0
    logit_steps_compared: int = 0
    correct: int = 0
    labelled: int = 0
    divergences: list[dict[str, Any]] = field(default_factory=list)
    divergence_count: int = 0
    max_divergence_gap: float = 0.0

    def add(
        self,
        index: int,
        item: ParityInput,
        reference: Sequence[int],
        output: Sequence[int],
        reference_logits: np.ndarray,
        step_diffs: Sequence[float],
        correct: bool | None,
    ) -> None:
        """Record one input. ``reference_logits`` are PyTorch's (steps x vocab) along its own
        output; ``step_diffs[t]`` is max |logit - reference logit| at step t of this variant."""
        prefix = self.total.add(reference, output)
        self.by_kind.setdefault(item.kind, _Counts()).add(reference, output)
        # Steps 0..prefix were fed identical tokens (step `prefix` chose differently, if any).
        synced = min(prefix + 1, len(reference), len(step_diffs))
        if synced:
            self.max_abs_logit_diff = max(self.max_abs_logit_diff, max(step_diffs[:synced]))
            self.logit_steps_compared += synced
        if correct is not None:
            self.labelled += 1
            self.correct += correct
        if list(reference) != list(output):
            self.divergence_count += 1
            ref_token = reference[prefix] if prefix < len(reference) else None
            out_token = output[prefix] if prefix < len(output) else None
            gap = None
            if ref_token is not None and out_token is not None and prefix < len(reference_logits):
                row = reference_logits[prefix]
                gap = float(row[ref_token] - row[out_token])
                self.max_divergence_gap = max(self.max_divergence_gap, gap)
            else:
                self.max_divergence_gap = float("inf")
            if len(self.divergences) < _MAX_DIVERGENCES_LISTED:
                self.divergences.append(
                    {
                        "input": index,
                        "kind": item.kind,
                        "step": prefix,
                        "pytorch_token": ref_token,
                        "variant_token": out_token,
                        "pytorch_logit_gap": gap,
                    }
                )

    def summary(self) -> dict[str, Any]:
        result = self.total.summary()
        result["max_abs_logit_diff"] = (
            self.max_abs_logit_diff if self.logit_steps_compared else None
        )
        result["logit_steps_compared"] = self.logit_steps_compared
        result["accuracy"] = self.correct / self.labelled if self.labelled else None
        result["by_kind"] = {kind: counts.summary() for kind, counts in self.by_kind.items()}
        result["divergent_sequences"] = self.divergence_count
        result["divergences"] = self.divergences
        return result


def step_diff_recorder(reference_logits: np.ndarray, steps: int) -> tuple[StepObserver, np.ndarray]:
    """A decoding-step observer that records, per row and step, max |logits - reference|.

    Entries that either side masked to -inf (a runtime's own end-token suppression) are
    skipped. Steps a row did not run (it had finished), and steps past the reference's
    length, are left at 0 and never read.
    """
    import numpy as np

    batch = reference_logits.shape[0]
    diffs = np.zeros((batch, steps), dtype=np.float64)

    def record(step: int, rows: np.ndarray, logits: np.ndarray) -> None:
        if step >= reference_logits.shape[1]:
            return
        width = min(logits.shape[-1], reference_logits.shape[-1])
        delta = np.abs(logits[:, :width] - reference_logits[rows, step, :width])
        delta[~np.isfinite(delta)] = 0.0
        diffs[rows, step] = delta.max(axis=-1)

    return record, diffs


def row_diffs(reference_logits: np.ndarray, logits: np.ndarray) -> list[float]:
    """Per-step max |logits - reference| for one row (both steps x vocab)."""
    import numpy as np

    steps = min(len(reference_logits), len(logits))
    width = min(reference_logits.shape[-1], logits.shape[-1])
    if steps == 0:
        return []
    delta = np.abs(logits[:steps, :width] - reference_logits[:steps, :width])
    delta[~np.isfinite(delta)] = 0.0
    return delta.max(axis=-1).tolist()


# ----- fp16 headroom ---------------------------------------------------------------------------
def fp16_activation_peak(
    optimum_dir: Path,
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    threads: int | None = None,
) -> dict[str, Any]:
    """The largest activation, on real inputs, among the tensors fp16-mixed computes in fp16.

    Runs optimum's fp32 encoder and decoder (without past; the reference output teacher-forced)
    with the output of every MatMul and Gather outside the fp32-kept regions exposed, and takes
    the largest magnitude (mask sentinels excluded). This is the check that needs no GPU: a
    value beyond fp16's 65504 would be inf on the GPU.
    ``samples``: (input_ids, attention_mask, decoder_input_ids), each batch x length, int64.
    """
    import numpy as np
    import onnx
    from mindmirror.engine.onnx import GraphRunner
    from mindmirror.export.convert import FP16_KEEP_FP32

    peak, where = 0.0, None
    runners = {}
    for stem in ("encoder_model.onnx", "decoder_model.onnx"):
        model = onnx.load(str(optimum_dir / stem))
        present = {o.name for o in model.graph.output}
        watched = [
            node.output[0]
            for node in model.graph.node
            if node.op_type in ("MatMul", "Gather")
            and not FP16_KEEP_FP32.search(node.name)
            and node.output[0] not in present
        ]
        for name in watched:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        runners[stem] = (GraphRunner(model.SerializeToString(), threads or 0), watched)

    def scan(values: dict[str, np.ndarray], names: list[str]) -> None:
        nonlocal peak, where
        for name in names:
            value = values[name]
            if value.dtype.kind != "f" or value.size == 0:
                continue
            magnitude = np.abs(value)
            magnitude = magnitude[magnitude < _MASK_SENTINEL]
            if magnitude.size and float(magnitude.max()) > peak:
                peak, where = float(magnitude.max()), name

    encoder, encoder_watched = runners["encoder_model.onnx"]
    decoder, decoder_watched = runners["decoder_model.onnx"]
    for input_ids, attention_mask, decoder_ids in samples:
        values = encoder({"input_ids": input_ids, "attention_mask": attention_mask})
        scan(values, encoder_watched)
        feeds = {
            "input_ids": decoder_ids,
            "encoder_attention_mask": attention_mask,
            "encoder_hidden_states": values["last_hidden_state"],
        }
        scan(decoder(feeds), decoder_watched)
    return {
        "peak_abs_activation": peak,
        "tensor": where,
        "fp16_max": FP16_MAX,
        "headroom": FP16_MAX / peak if peak else None,
        "samples": len(samples),
    }
