"""The parity arithmetic and input building, on hand-made numbers (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mindmirror.export.parity import (
    ParityInput,
    VariantParity,
    build_inputs,
    common_prefix,
    row_diffs,
    step_diff_recorder,
)
from mindmirror.export.pipeline import ExportOptions
from mindmirror.export.verify import _gates
from mindmirror.student.bundle import Manifest
from mindmirror.student.tasks import get_task

PREDICT = ParityInput("predict", "predict: q", 8, gold="1 + 2")
EXPLAIN = ParityInput("explain", "explain: q", 8)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix([1, 2, 3], [1, 5, 3]) == 1
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [4]) == 0


def _logits(steps: int, vocab: int = 6) -> np.ndarray:
    return np.arange(steps * vocab, dtype=np.float32).reshape(steps, vocab)


def test_identical_outputs_count_as_exact_and_every_step_is_compared():
    parity = VariantParity("onnx/fp32")
    parity.add(0, PREDICT, [3, 4, 1], [3, 4, 1], _logits(3), [1e-6, 2e-6, 3e-6], True)
    summary = parity.summary()
    assert summary["exact_match"] == 1.0
    assert summary["token_agreement"] == 1.0
    assert summary["max_abs_logit_diff"] == pytest.approx(3e-6)
    assert summary["logit_steps_compared"] == 3
    assert summary["accuracy"] == 1.0
    assert summary["divergences"] == []


def test_logits_after_the_first_difference_are_not_compared():
    parity = VariantParity("onnx/int8")
    reference_logits = _logits(4)
    # Diverges at step 1; steps 2-3 decode a different text, their huge diffs are ignored.
    parity.add(0, EXPLAIN, [3, 4, 5, 1], [3, 2, 5, 1], reference_logits, [0.1, 0.2, 50, 60], None)
    summary = parity.summary()
    assert summary["exact_match"] == 0.0
    assert summary["token_agreement"] == pytest.approx(1 / 4)
    assert summary["max_abs_logit_diff"] == pytest.approx(0.2)
    assert summary["logit_steps_compared"] == 2
    assert summary["accuracy"] is None
    (divergence,) = summary["divergences"]
    assert divergence == {
        "input": 0,
        "kind": "explain",
        "step": 1,
        "pytorch_token": 4,
        "variant_token": 2,
        "pytorch_logit_gap": float(reference_logits[1, 4] - reference_logits[1, 2]),
    }


def test_agreement_is_summed_over_inputs_and_split_by_kind():
    parity = VariantParity("onnx/int8")
    parity.add(0, PREDICT, [3, 1], [3, 1], _logits(2), [0, 0], True)
    parity.add(1, PREDICT, [3, 4, 1], [3, 1], _logits(3), [0, 0], False)
    parity.add(2, EXPLAIN, [5, 5, 5, 1], [5, 5, 5, 1], _logits(4), [0] * 4, None)
    summary = parity.summary()
    assert summary["sequences"] == 3
    assert summary["exact_match"] == pytest.approx(2 / 3)
    # agreeing tokens 2 + 1 + 4 over compared 2 + 3 + 4
    assert summary["token_agreement"] == pytest.approx(7 / 9)
    assert summary["accuracy"] == 0.5
    assert summary["by_kind"]["predict"]["exact_match"] == 0.5
    assert summary["by_kind"]["explain"]["exact_match"] == 1.0


def test_step_diff_recorder_skips_masked_entries():
    reference = np.zeros((2, 3, 4), dtype=np.float32)
    record, diffs = step_diff_recorder(reference, steps=3)
    step = np.array([[0.5, 0, 0, 0], [0, -np.inf, 0, 0.25]], dtype=np.float32)
    record(0, np.array([0, 1]), step)
    record(5, np.array([0, 1]), step)  # beyond the reference: ignored
    assert diffs[:, 0].tolist() == [0.5, 0.25]
    # Once row 0 has finished, the loop reports row 1 alone: row 0's entry stays untouched.
    reference[1, 1, 2] = 2.0
    record(1, np.array([1]), step[1:])
    assert diffs[:, 1].tolist() == [0.0, 2.0]
    assert row_diffs(np.zeros((2, 3)), np.ones((3, 3))) == [1.0, 1.0]


def _fp32_entry(diff: float) -> dict:
    return {"max_abs_logit_diff": diff, "accuracy": None, "sequences": 1, "divergences": []}


def test_fp32_gate_fails_on_logit_drift_and_on_real_divergence():
    options = ExportOptions(bundle=None, fp32_atol=1e-3)  # type: ignore[arg-type]
    clean = VariantParity("onnx/fp32")
    checks, problems = _gates("onnx/fp32", "fp32", _fp32_entry(1e-5), clean, None, options)
    assert problems == []
    assert checks["greedy_outputs_identical"]

    _, problems = _gates("onnx/fp32", "fp32", _fp32_entry(0.01), clean, None, options)
    assert problems
    assert "logits differ" in problems[0]

    tie = VariantParity("onnx/fp32")
    logits = np.zeros((2, 6), dtype=np.float32)
    logits[1, 4], logits[1, 2] = 1.0, 1.0 - 1e-4  # PyTorch itself nearly tied
    tie.add(0, EXPLAIN, [3, 4, 1], [3, 2, 1], logits, [0, 0], None)
    checks, problems = _gates("onnx/fp32", "fp32", _fp32_entry(1e-5), tie, None, options)
    assert problems == []
    assert checks["divergences_are_ties"]
    assert not checks["greedy_outputs_identical"]

    real = VariantParity("onnx/fp32")
    logits[1, 2] = -3.0
    real.add(0, EXPLAIN, [3, 4, 1], [3, 2, 1], logits, [0, 0], None)
    _, problems = _gates("onnx/fp32", "fp32", _fp32_entry(1e-5), real, None, options)
    assert problems
    assert "greedy outputs differ" in problems[0]


def test_fp32_gate_fails_when_verdict_scores_drift():
    options = ExportOptions(bundle=None, fp32_atol=1e-3)  # type: ignore[arg-type]
    clean = VariantParity("onnx/fp32")
    entry = {**_fp32_entry(1e-5), "verdict_scores": {"inputs": 3, "max_abs_diff": 2e-5}}
    checks, problems = _gates("onnx/fp32", "fp32", entry, clean, None, options)
    assert (checks["verdict_scores_match"], problems) == (True, [])
    entry["verdict_scores"]["max_abs_diff"] = 0.02
    checks, problems = _gates("onnx/fp32", "fp32", entry, clean, None, options)
    assert checks["verdict_scores_match"] is False
    assert "verdict scores differ" in problems[0]


def test_verdict_score_diffs_read_the_first_step_of_self_evaluation_inputs():
    from mindmirror.export.verify import _verdict_score_diffs

    manifest = Manifest(task="svamp", self_evaluation=True)
    reference = np.zeros((2, 3, 6))
    reference[:, 0, 2] = 2.0  # "correct" (token 2) leads at the first step
    runtime = reference[:, 0, :].copy()
    runtime[1, 3] = 1.0  # the second row's "wrong" rose
    items = [
        ParityInput("evaluate:predict", "a", 2, None, None),
        ParityInput("predict", "b", 2, None, None),
    ]
    diffs = _verdict_score_diffs(items, reference, runtime, (2, 3, 4), manifest)
    assert diffs == [0.0]  # only the self-evaluation input is scored
    items[1] = ParityInput("evaluate:predict", "b", 2, None, None)
    diffs = _verdict_score_diffs(items, reference, runtime, (2, 3, 4), manifest)
    expected = 1 / (1 + np.exp(-2.0)) - 1 / (1 + np.exp(-1.0))
    assert diffs == pytest.approx([0.0, expected])


def test_accuracy_gate_for_reduced_variants():
    options = ExportOptions(bundle=None, max_accuracy_drop=1.0)  # type: ignore[arg-type]
    parity = VariantParity("onnx/int8")
    entry = {"accuracy": 0.60}
    checks, problems = _gates("onnx/int8", "int8", entry, parity, 0.625, options)
    assert entry["accuracy_delta_points"] == pytest.approx(-2.5)
    assert not checks["accuracy_drop_within_limit"]
    assert "2.50 points below" in problems[0]

    entry = {"accuracy": 0.62}
    checks, problems = _gates("onnx/int8", "int8", entry, parity, 0.625, options)
    assert checks["accuracy_drop_within_limit"]
    assert problems == []

    entry = {"accuracy": None}  # no labels: reported as not measured, never a failure
    checks, problems = _gates("onnx/int8", "int8", entry, parity, None, options)
    assert checks["accuracy_drop_within_limit"] is None
    assert problems == []


def test_inputs_from_task_data(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"id": f"e{i}", "input": f"Tom has {i} apples.", "label": f"{i} + 1"} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = Manifest(task="svamp", self_evaluation=True)
    inputs, description = build_inputs(
        manifest, get_task("svamp"), path, max_examples=4, max_explain=2
    )
    kinds = description["inputs"]
    assert kinds["predict"] == 4
    assert kinds["explain"] == 2
    assert kinds["evaluate:predict"] >= 1  # from the task's exemplars: the data has no CoTs
    assert description["labelled"] == 4
    assert description["source"] == str(path)
    first = inputs[0]
    assert first.text == "predict: Tom has 0 apples."
    assert first.gold == "0 + 1"
    assert first.max_new_tokens == manifest.generation.max_new_tokens_predict
    explain = next(i for i in inputs if i.kind == "explain")
    assert explain.max_new_tokens == manifest.generation.max_new_tokens_explain


def test_inputs_from_a_distillation_set_use_its_chains_of_thought(tmp_path):
    path = tmp_path / "distill.jsonl"
    record = {
        "id": "a",
        "task": "svamp",
        "question": "Ana has 5 books. She gets 2 more.",
        "label": "5 + 2",
        "cots": [{"text": "t", "rationale": "5 and 2 more is 7.", "answer": "5 + 2"}],
    }
    path.write_text(json.dumps(record) + "\n")
    manifest = Manifest(task="svamp", self_evaluation=True)
    inputs, description = build_inputs(manifest, get_task("svamp"), path)
    assert description["kind"] == "distillation set"
    evaluate = [i for i in inputs if i.kind == "evaluate:predict"]
    assert len(evaluate) == 1
    assert "reasoning: 5 and 2 more is 7. The answer is (5 + 2)." in evaluate[0].text


def test_generated_inputs_without_data_are_reproducible():
    manifest = Manifest(task="svamp")
    task = get_task("svamp")
    vocabulary = ["▁apple", "▁tree", "s", "▁7", "</s>"]
    first, description = build_inputs(manifest, task, None, vocabulary=vocabulary, seed=3)
    second, _ = build_inputs(manifest, task, None, vocabulary=vocabulary, seed=3)
    assert first == second
    assert description["source"] == "generated"
    assert description["labelled"] == 0
    assert not any(i.kind.startswith("evaluate") for i in first)  # no self-evaluation trained
    assert len([i for i in first if i.kind == "predict"]) == len(task.cot_exemplars) + 8
