"""Backends against the reference: ``T5ForConditionalGeneration.generate`` on the tiny bundle."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mindmirror.engine.ids import read_model_ids
from mindmirror.service.backends import BackendError, Row, create, resolve
from mindmirror.service.runtime import StudentModel, resolve_limits
from mindmirror.service.settings import Settings, SettingsError
from mindmirror.service.text import TextCodec
from mindmirror.student.bundle import BundleError, load_manifest, write_manifest

from tests.tiny_student import make_problems


@pytest.fixture(scope="module")
def inputs(onnx_bundle: Path) -> list[str]:
    """Predict, explain and self-evaluation inputs of different lengths."""
    prefixes = load_manifest(onnx_bundle, verify=False).prefixes
    problems = make_problems(6, seed=21)
    texts = [prefixes.cot_input(p.question, "predict") for p in problems[:3]]
    texts += [prefixes.cot_input(p.question, "explain") for p in problems[3:]]
    texts += [
        prefixes.self_eval_input(
            p.question, f"{p.wrong_rationale} The answer is ({p.wrong_label}).", "predict"
        )
        for p in problems[:2]
    ]
    return texts


@pytest.fixture(scope="module")
def reference(onnx_bundle: Path, inputs: list[str]) -> list[list[int]]:
    """Greedy ids from transformers' generate on the padded batch, cut at EOS."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(onnx_bundle).eval()
    tokenizer = AutoTokenizer.from_pretrained(onnx_bundle)
    batch = tokenizer(inputs, return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = model.generate(**batch, max_new_tokens=48, do_sample=False, num_beams=1)
    expected = []
    for sequence in output[:, 1:].tolist():
        ids = []
        for token in sequence:
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
        expected.append(ids)
    return expected


def open_backend(bundle: Path, name: str, **options):
    manifest = load_manifest(bundle)
    ids = read_model_ids(bundle)
    codec = TextCodec(bundle, ids)
    spec = resolve(bundle, manifest, ids, backend=name, device="cpu", options=options)
    backend = create(spec, codec)
    backend.setup()
    return backend, codec


def rows_for(codec: TextCodec, inputs: list[str], max_new: int = 48, **kwargs) -> list[Row]:
    return [Row(ids, max_new, **kwargs) for ids in codec.encode(inputs)]


def test_tokenizer_matches_transformers(onnx_bundle: Path, inputs: list[str], reference) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(onnx_bundle)
    codec = TextCodec(onnx_bundle, read_model_ids(onnx_bundle))
    assert codec.encode(inputs) == [tokenizer(text).input_ids for text in inputs]
    assert codec.decode(reference) == tokenizer.batch_decode(reference, skip_special_tokens=True)
    assert codec.truncate(list(range(10, 20)), 4) == [10, 11, 12, tokenizer.eos_token_id]


@pytest.mark.parametrize("io_binding", [False, True], ids=["host", "io-binding"])
def test_onnx_greedy_equals_pytorch_generate(
    onnx_bundle: Path, inputs: list[str], reference, io_binding: bool
) -> None:
    backend, codec = open_backend(onnx_bundle, "onnx", io_binding=io_binding)
    assert backend(rows_for(codec, inputs)) == reference
    # Any subset and order gives the same answers (rows do not leak into each other).
    subset = [5, 0, 3]
    assert backend(rows_for(codec, [inputs[i] for i in subset])) == [reference[i] for i in subset]


def test_pytorch_backend_equals_generate(onnx_bundle: Path, inputs: list[str], reference) -> None:
    backend, codec = open_backend(onnx_bundle, "pytorch")
    assert backend(rows_for(codec, inputs)) == reference


def test_ctranslate2_backend_equals_generate(
    onnx_bundle: Path, inputs: list[str], reference, tmp_path: Path
) -> None:
    pytest.importorskip("ctranslate2")
    from tests.service.exports import add_ctranslate2_export

    bundle = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, bundle)
    add_ctranslate2_export(bundle)
    backend, codec = open_backend(bundle, "ctranslate2")
    assert backend(rows_for(codec, inputs)) == reference


def test_verdict_scores_agree_across_backends(
    onnx_bundle: Path, inputs: list[str], tmp_path: Path
) -> None:
    """Every runtime scores the verdict words' first tokens as transformers does: the same
    log-softmax of the first decoder step, whatever shares the batch."""
    import torch
    from mindmirror.student.verdict_scores import verdict_token_ids
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(onnx_bundle)
    tokens = list(verdict_token_ids(lambda text: tokenizer(text).input_ids))
    model = T5ForConditionalGeneration.from_pretrained(onnx_bundle).eval()
    expected = []
    for text in inputs:  # one at a time: no padding in the reference
        batch = tokenizer([text], return_tensors="pt")
        start = torch.full((1, 1), model.config.decoder_start_token_id)
        with torch.inference_mode():
            logits = model(**batch, decoder_input_ids=start).logits[0, 0].double()
        expected.append(torch.log_softmax(logits, -1)[tokens].tolist())

    bundle = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, bundle)
    runtimes = [("onnx", {"io_binding": False}), ("onnx", {"io_binding": True}), ("pytorch", {})]
    if importlib.util.find_spec("ctranslate2") is not None:
        from tests.service.exports import add_ctranslate2_export

        add_ctranslate2_export(bundle)
        runtimes.append(("ctranslate2", {}))
    for name, options in runtimes:
        backend, codec = open_backend(bundle, name, **options)
        scored = np.array(backend.score_first(rows_for(codec, inputs, max_new=1), tokens))
        np.testing.assert_allclose(scored, expected, atol=1e-4, err_msg=f"{name} {options}")
        alone = np.array(backend.score_first(rows_for(codec, inputs[-1:], max_new=1), tokens))
        np.testing.assert_allclose(alone, expected[-1:], atol=1e-4, err_msg=f"{name} alone")


def test_each_row_keeps_its_own_budget_and_cancellation(
    onnx_bundle: Path, inputs: list[str], reference
) -> None:
    backend, codec = open_backend(onnx_bundle, "onnx")
    rows = rows_for(codec, inputs)
    rows[3].max_new_tokens = 3
    rows[4].cancelled.set()
    out = backend(rows)
    assert out[3] == reference[3][:3]
    assert out[4] == []
    assert [o for i, o in enumerate(out) if i not in (3, 4)] == [
        r for i, r in enumerate(reference) if i not in (3, 4)
    ]


def test_sampling_is_seeded_and_top1_is_greedy(
    onnx_bundle: Path, inputs: list[str], reference
) -> None:
    backend, codec = open_backend(onnx_bundle, "onnx")
    explain = inputs[3:6]
    first = backend(rows_for(codec, explain, temperature=1.5, top_k=0, seed=5))
    assert backend(rows_for(codec, explain, temperature=1.5, top_k=0, seed=5)) == first
    others = [backend(rows_for(codec, explain, temperature=1.5, top_k=0, seed=s)) for s in (6, 7)]
    assert any(other != first for other in others), "different seeds never changed a sample"
    assert backend(rows_for(codec, explain, temperature=0.7, top_k=1, seed=9)) == reference[3:6]


def test_auto_picks_the_recommended_onnx_variant(onnx_bundle: Path) -> None:
    model = StudentModel.open(Settings(bundle=onnx_bundle))
    assert (model.backend.name, model.backend.variant, model.backend.device) == (
        "onnx",
        "fp32",
        "cpu",
    )


def test_auto_falls_back_to_pytorch_without_an_export(tiny_bundle: Path) -> None:
    model = StudentModel.open(Settings(bundle=tiny_bundle))
    assert model.backend.name == "pytorch"
    with pytest.raises(BackendError, match="no onnx export.*mindmirror export"):
        StudentModel.open(Settings(bundle=tiny_bundle, backend="onnx"))


def copy_bundle(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(source, target)
    return target


def test_selection_errors_are_clear(onnx_bundle: Path, tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendError, match="cannot use CUDA here.*onnxruntime-gpu"):
            StudentModel.open(Settings(bundle=onnx_bundle, device="cuda"))
    with pytest.raises(BackendError, match=r"MINDMIRROR_VARIANT=int8.*\['fp32'\]"):
        StudentModel.open(Settings(bundle=onnx_bundle, variant="int8"))
    bundle = copy_bundle(onnx_bundle, tmp_path)
    manifest = load_manifest(bundle, verify=False)
    exports = json.loads(json.dumps(manifest.exports))
    exports["onnx"]["variants"]["fp32"]["devices"] = ["cpu"]
    write_manifest(bundle, manifest.model_copy(update={"exports": exports}))
    with pytest.raises(BackendError, match="runs on cpu, not cuda"):
        StudentModel.open(Settings(bundle=bundle, device="cuda", variant="fp32"))
    exports["onnx"]["variants"]["fp32"]["path"] = "../../elsewhere"
    write_manifest(bundle, manifest.model_copy(update={"exports": exports}))
    with pytest.raises(BundleError, match="outside the bundle"):
        StudentModel.open(Settings(bundle=bundle))


def test_loaded_files_are_checksummed(onnx_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(onnx_bundle, tmp_path)
    decoder = bundle / "onnx" / "fp32" / "decoder_model_merged.onnx"
    decoder.write_bytes(decoder.read_bytes()[:-10])
    with pytest.raises(BundleError, match="checksum mismatch for onnx/fp32/decoder_model_merged"):
        StudentModel.open(Settings(bundle=bundle))
    shutil.copy(onnx_bundle / "onnx" / "fp32" / "decoder_model_merged.onnx", decoder)
    (bundle / "onnx" / "fp32" / "extra.onnx_data").write_bytes(b"unlisted")
    with pytest.raises(BundleError, match="extra.onnx_data not listed"):
        StudentModel.open(Settings(bundle=bundle))
    (bundle / "onnx" / "fp32" / "extra.onnx_data").unlink()
    (bundle / "tokenizer.json").write_text("{}")
    with pytest.raises(BundleError, match="tokenizer.json"):
        StudentModel.open(Settings(bundle=bundle))


def test_limits_are_checked_against_the_manifest(onnx_bundle: Path) -> None:
    manifest = load_manifest(onnx_bundle, verify=False)
    limits = resolve_limits(Settings(bundle=onnx_bundle), manifest)
    assert (limits.max_input_tokens, limits.max_new_tokens_explain) == (128, 48)
    with pytest.raises(SettingsError, match="exceeds the 128 tokens the student was trained with"):
        resolve_limits(Settings(bundle=onnx_bundle, max_input_tokens=512), manifest)
    with pytest.raises(SettingsError, match="MINDMIRROR_MAX_BATCH_TOKENS=100"):
        resolve_limits(Settings(bundle=onnx_bundle, max_batch_tokens=100), manifest)


def test_long_inputs_are_cut_when_truncation_is_on(onnx_bundle: Path) -> None:
    model = StudentModel.open(Settings(bundle=onnx_bundle, truncate_input=True))
    long_input = "predict: " + " ".join(["apples"] * 300)
    [ids] = model.encode_inputs([long_input], ["input"])
    assert len(ids) == 128
    assert ids[-1] == model.codec.ids.eos
