"""The export's *verify* step: decode the parity inputs with PyTorch and with every variant,
compare, and gate (the comparison itself is :mod:`mindmirror.export.parity`).

ONNX variants decode with the engine, exactly as the service serves them: the same session
options (:func:`mindmirror.engine.onnx.load_sessions`), the same loop
(:func:`mindmirror.engine.decoding.generate`) and the same strategy for the device (host memory
on the CPU, IO binding on CUDA), so ``onnx/parity.json`` certifies the code that serves.
CTranslate2 variants decode through the vocabulary mapping the service's backend uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.engine.decoding import cut_after_eos, rows_from_arrays
from mindmirror.engine.ids import ModelIds, read_model_ids
from mindmirror.export.convert import VARIANTS
from mindmirror.export.ct2 import CT2_VARIANTS
from mindmirror.student.bundle import Manifest
from mindmirror.student.tasks import Task

from mindmirror import __version__

if TYPE_CHECKING:
    import numpy as np
    from mindmirror.export.pipeline import ExportOptions

__all__ = ["REPORT_FORMAT_VERSION", "verify"]

logger = logging.getLogger(__name__)

REPORT_FORMAT_VERSION = 1


#: how far an fp32 variant's verdict score may be from PyTorch's
VERDICT_SCORE_ATOL = 1e-3


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _reference_generate(
    model: Any,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    max_new_tokens: int,
    ids: ModelIds,
) -> tuple[list[list[int]], np.ndarray]:
    """PyTorch greedy decoding: outputs cut after the end token, and logits per step."""
    import torch

    config = ids.greedy_config(max_new_tokens)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            generation_config=config,
            use_model_defaults=False,
            return_dict_in_generate=True,
            output_logits=True,
        )
    rows = [cut_after_eos(row.tolist(), ids.eos) for row in out.sequences[:, 1:]]
    logits = torch.stack(out.logits, dim=1).float().numpy()
    return rows, logits


def verify(
    options: ExportOptions,
    manifest: Manifest,
    task: Task,
    model: Any,
    tokenizer: Any,
    staging: Path,
    structures: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The parity report of every variant built in ``staging`` (see docs/export.md)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers
    from mindmirror.engine.onnx import OnnxSeq2Seq
    from mindmirror.export import parity
    from mindmirror.export.ct2 import Ct2Seq2Seq
    from tqdm import tqdm

    ids = read_model_ids(options.bundle)
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
        runtime = OnnxSeq2Seq.load(
            staging / "onnx" / name,
            ids,
            device="cuda" if on_cuda else "cpu",
            threads=options.threads or 0,
        )
        runtimes[f"onnx/{name}"] = runtime
        runtime_info[f"onnx/{name}"] = {
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": runtime.decoder.get_providers()[0],
            "strategy": "device (IO binding)" if runtime.io_binding else "host",
            "verified_on": runtime.device,
            "precision": spec.precision,
            "devices": list(spec.devices),
        }
    for name in options.ctranslate2:
        import ctranslate2

        runtimes[f"ctranslate2/{name}"] = Ct2Seq2Seq(
            staging / "ctranslate2" / name, tokenizer, ids, threads=options.threads or 0
        )
        runtime_info[f"ctranslate2/{name}"] = {
            "runtime": f"ctranslate2 {ctranslate2.__version__}",
            "provider": "cpu",
            "verified_on": "cpu",
            "precision": CT2_VARIANTS[name],
            "devices": ["cpu", "cuda"],
        }

    results = {key: parity.VariantParity(key) for key in runtimes}
    # The verdict scores /v1/evaluate returns, from each runtime's first-step logits on the
    # self-evaluation inputs against PyTorch's: what the service's scoring queue computes.
    verdict_tokens = _verdict_tokens(manifest, tokenizer)
    verdict_diffs: dict[str, list[float]] = {key: [] for key in runtimes}
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
            model, input_ids, attention_mask, limit, ids
        )
        if len(headroom_samples) < 8:  # one per batch: predict, explain and evaluate inputs
            row = 0
            decoder_ids = np.array([[ids.decoder_start, *reference[row]]], dtype=np.int64)
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
            first_logits = np.zeros((len(items), reference_logits.shape[-1]), dtype=np.float64)
            if isinstance(runtime, OnnxSeq2Seq):
                record, diffs = parity.step_diff_recorder(reference_logits, limit)

                def observe(
                    step: int,
                    live: np.ndarray,
                    logits: np.ndarray,
                    record: Any = record,
                    first: np.ndarray = first_logits,
                ) -> None:
                    if step == 0:
                        width = min(first.shape[1], logits.shape[1])
                        first[live, :width] = logits[:, :width]
                    record(step, live, logits)

                rows = rows_from_arrays(input_ids, attention_mask, limit)
                generations = runtime.generate(rows, observer=observe)
                outputs = [generation.with_end(ids.eos) for generation in generations]
                per_row = [diffs[r].tolist() for r in range(len(items))]
            else:
                per_row = [[] for _ in items]

                def keep(
                    row: int,
                    logits: np.ndarray,
                    per_row: list = per_row,
                    reference_logits: np.ndarray = reference_logits,
                    first: np.ndarray = first_logits,
                ) -> None:
                    per_row[row] = parity.row_diffs(reference_logits[row], logits)
                    width = min(first.shape[1], logits.shape[1])
                    first[row, :width] = logits[0, :width]

                outputs = runtime.generate(input_ids, attention_mask, limit, on_row_logits=keep)
            if verdict_tokens is not None:
                verdict_diffs[key] += _verdict_score_diffs(
                    items, reference_logits, first_logits, verdict_tokens, manifest
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
        if verdict_diffs[key]:
            entry["verdict_scores"] = {
                "inputs": len(verdict_diffs[key]),
                "max_abs_diff": max(verdict_diffs[key]),
            }
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


def _verdict_tokens(manifest: Manifest, tokenizer: Any) -> tuple[int, int, int] | None:
    if not manifest.self_evaluation:
        return None
    from mindmirror.student.verdict_scores import verdict_token_ids

    return verdict_token_ids(lambda text: tokenizer(text)["input_ids"])


def _verdict_score_diffs(
    items: list[Any],
    reference_logits: Any,
    first_logits: Any,
    tokens: tuple[int, int, int],
    manifest: Manifest,
) -> list[float]:
    """|score - PyTorch's score| of each self-evaluation (predict) input of a batch: the
    calibrated probability /v1/evaluate returns, read from the first step's logits."""
    from mindmirror.engine.decoding import log_softmax
    from mindmirror.student.verdict_scores import score_verdict

    diffs = []
    for row, item in enumerate(items):
        if item.kind != "evaluate:predict":
            continue
        scores = [
            score_verdict(log_softmax(logits)[list(tokens)], manifest.verdict_calibration).score
            for logits in (reference_logits[row][0], first_logits[row])
        ]
        diffs.append(abs(scores[0] - scores[1]))
    return diffs


def _judge(task: Task, tokenizer: Any, item: Any, tokens: list[int]) -> bool | None:
    """Whether a ``predict`` output is the gold label (``None`` when there is no gold)."""
    if item.kind != "predict" or item.gold is None:
        return None
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return task.is_correct(task.read_label(text, item.example), item.gold)


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
        verdicts = entry.get("verdict_scores")
        if verdicts is not None:
            # A score is a probability: 1e-3 is far below any threshold's resolution.
            checks["verdict_scores_match"] = verdicts["max_abs_diff"] <= VERDICT_SCORE_ATOL
            if not checks["verdict_scores_match"]:
                problems.append(
                    f"{key}: verdict scores differ from PyTorch by up to "
                    f"{verdicts['max_abs_diff']:.3g} (allowed {VERDICT_SCORE_ATOL:g})"
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
