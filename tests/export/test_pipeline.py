"""End-to-end export of the tiny *trained* student: parity, checksums, refusals, atomicity."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mindmirror.export.errors import ExportError, ParityError
from mindmirror.export.pipeline import FAILED_REPORT_NAME, ExportOptions, run_export
from mindmirror.student.bundle import BundleError, compute_checksums, load_manifest, write_manifest
from mindmirror.student.formats import DEFAULT_PREFIXES

from tests.tiny_student import make_problems

REPO = Path(__file__).resolve().parents[2]


def _snapshot(bundle: Path) -> dict[str, str]:
    """Every file of the bundle (manifest included) -> sha256."""
    snapshot = compute_checksums(bundle)
    snapshot["mindmirror.json"] = (bundle / "mindmirror.json").read_text()
    return snapshot


def _test_texts() -> list[str]:
    problems = make_problems(16, seed=7)
    texts = [DEFAULT_PREFIXES.cot_input(p.question, "predict") for p in problems]
    texts += [DEFAULT_PREFIXES.cot_input(p.question, "explain") for p in problems[:6]]
    right = f"{problems[0].rationale} The answer is ({problems[0].label})."
    texts.append(DEFAULT_PREFIXES.self_eval_input(problems[0].question, right, "predict"))
    return texts


def test_fp32_onnx_greedy_output_is_identical_to_pytorch(exported):
    """Independent of the parity code: transformers' generate vs our ORT loop, every input."""
    import torch
    from mindmirror.engine.decoding import Row
    from mindmirror.engine.onnx import OnnxSeq2Seq
    from transformers import AutoTokenizer, GenerationConfig, T5ForConditionalGeneration

    bundle, result = exported
    manifest = load_manifest(bundle)
    model = T5ForConditionalGeneration.from_pretrained(bundle, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    onnx_model = OnnxSeq2Seq.from_bundle(bundle, "fp32")
    texts = _test_texts()
    limit = manifest.generation.max_new_tokens_explain
    config = GenerationConfig(
        max_new_tokens=limit,
        do_sample=False,
        num_beams=1,
        decoder_start_token_id=model.config.decoder_start_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
    )
    compared = 0
    for start in range(0, len(texts), 5):
        encoded = tokenizer(texts[start : start + 5], padding=True, return_tensors="np")
        with torch.inference_mode():
            sequences = model.generate(
                input_ids=torch.from_numpy(encoded["input_ids"]),
                attention_mask=torch.from_numpy(encoded["attention_mask"]),
                generation_config=config,
            )
        expected = []
        for row in sequences[:, 1:].tolist():
            eos = model.config.eos_token_id
            expected.append(row[: row.index(eos) + 1] if eos in row else row)
        rows = [Row(ids, limit) for ids in tokenizer(texts[start : start + 5]).input_ids]
        produced = [g.with_end(model.config.eos_token_id) for g in onnx_model.generate(rows)]
        assert produced == expected, texts[start : start + 5]
        compared += len(expected)
    assert compared == len(texts)
    # ... and the export's own report agrees, on all of its inputs.
    fp32 = result.report["variants"]["onnx/fp32"]
    assert fp32["exact_match"] == 1.0
    assert fp32["token_agreement"] == 1.0
    assert fp32["divergent_sequences"] == 0
    assert fp32["sequences"] == sum(result.report["data"]["inputs"].values())
    assert 0 <= fp32["max_abs_logit_diff"] < 1e-3
    assert fp32["accuracy"] == result.report["pytorch"]["accuracy"]
    # The verdict scores /v1/evaluate returns are certified too, on every self-evaluation input.
    verdicts = fp32["verdict_scores"]
    assert verdicts["inputs"] == result.report["data"]["inputs"]["evaluate:predict"]
    assert 0 <= verdicts["max_abs_diff"] < 1e-4
    assert fp32["checks"]["verdict_scores_match"] is True


def test_int8_is_exported_and_its_parity_measured(exported):
    import onnx

    bundle, result = exported
    graph = onnx.load(str(bundle / "onnx/int8/decoder_model_merged.onnx"))
    quantized = [n for n in graph.graph.node[0].attribute[0].g.node if n.op_type == "MatMulInteger"]
    assert quantized, "the int8 decoder holds no quantized MatMul"
    fp32_size = (bundle / "onnx/fp32/decoder_model_merged.onnx").stat().st_size
    assert (bundle / "onnx/int8/decoder_model_merged.onnx").stat().st_size < fp32_size

    int8 = result.report["variants"]["onnx/int8"]
    assert int8["sequences"] == result.report["variants"]["onnx/fp32"]["sequences"]
    assert 0 < int8["token_agreement"] <= 1
    assert 0 < int8["exact_match"] <= 1
    # Quantized weights move the logits, measurably but not wildly.
    assert 0 < int8["max_abs_logit_diff"] < 5
    assert int8["logit_steps_compared"] > 0
    assert int8["accuracy"] is not None
    assert int8["accuracy_delta_points"] == pytest.approx(
        (int8["accuracy"] - result.report["pytorch"]["accuracy"]) * 100
    )
    for divergence in int8["divergences"]:
        assert divergence["pytorch_token"] != divergence["variant_token"]

    record = load_manifest(bundle).exports["onnx"]
    assert record["variants"]["int8"]["devices"] == ["cpu"]
    assert record["variants"]["int8"]["precision"] == "int8-weights"
    assert record["variants"]["int8"]["token_agreement"] == int8["token_agreement"]
    assert record["recommended"] == {"cpu": "int8", "cuda": "fp32"}
    assert record["pytorch_accuracy"] == result.report["pytorch"]["accuracy"]


def test_export_layout_checksums_and_report_on_disk(exported):
    bundle, result = exported
    manifest = load_manifest(bundle)  # verifies every checksum, the export's included
    on_disk = {
        p.relative_to(bundle).as_posix() for p in (bundle / "onnx").rglob("*") if p.is_file()
    }
    assert on_disk == {
        "onnx/parity.json",
        *(
            f"onnx/{variant}/{name}"
            for variant in ("fp32", "int8", "fp16-mixed")
            for name in ("encoder_model.onnx", "decoder_model_merged.onnx")
        ),
    }
    assert on_disk <= set(manifest.files)
    assert any(name.startswith("ctranslate2/int8/") for name in manifest.files)
    assert any(name.startswith("ctranslate2/fp32/") for name in manifest.files)
    assert json.loads((bundle / "onnx/parity.json").read_text()) == result.report
    assert not list(bundle.glob(".export-*")), "staging directory left behind"
    assert not (bundle / FAILED_REPORT_NAME).exists()


def test_every_variant_takes_the_same_inputs_as_fp32(exported):
    import onnxruntime as ort

    bundle, _ = exported

    def signature(path: Path) -> tuple:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (
            [(i.name, i.type) for i in session.get_inputs()],
            [(o.name, o.type) for o in session.get_outputs()],
        )

    for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
        reference = signature(bundle / "onnx/fp32" / name)
        assert "use_cache_branch" in str(reference) or name == "encoder_model.onnx"
        for variant in ("int8", "fp16-mixed"):
            assert signature(bundle / "onnx" / variant / name) == reference, (variant, name)


def test_fp16_mixed_keeps_norms_and_ffn_output_in_fp32(exported):
    import onnx

    bundle, result = exported
    graph = onnx.load(str(bundle / "onnx/fp16-mixed/encoder_model.onnx")).graph
    types = {t.name: t.data_type for t in graph.initializer}
    # wi (FFN input projection) runs in fp16; wo (output projection) and norms stay fp32.
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    wi = [n for n in matmuls if "DenseReluDense/wi/" in n.name]
    wo = [n for n in matmuls if "DenseReluDense/wo/" in n.name]
    assert wi
    assert wo
    assert {types[n.input[1]] for n in wi if n.input[1] in types} == {onnx.TensorProto.FLOAT16}
    assert {types[n.input[1]] for n in wo if n.input[1] in types} == {onnx.TensorProto.FLOAT}
    norm_weights = [name for name in types if "layer_norm" in name]
    assert norm_weights
    assert {types[name] for name in norm_weights} == {onnx.TensorProto.FLOAT}
    # ... and the FFN output reaches the residual addition without being rounded to fp16.
    producer = {out: node for node in graph.node for out in node.output}
    for matmul in wo:
        residual = next(n for n in graph.node if n.name == matmul.name.split("Dense")[0] + "Add")
        chain = [producer[name] for name in residual.input if name in producer]
        assert any(
            node is matmul or (node.op_type == "Cast" and producer.get(node.input[0]) is matmul)
            for node in chain
        ), residual.name
    assert entry_round_trips(bundle) == 0

    entry = result.report["variants"]["onnx/fp16-mixed"]
    assert entry["structure"]["fp16_round_trips"] == 0
    assert entry["structure"]["onnx_checker"] == {
        "encoder_model.onnx": "ok",
        "decoder_model_merged.onnx": "ok",
    }
    assert entry["verified_on"] == "cpu"
    assert "not exercised" in entry["note"]
    headroom = entry["fp16_headroom"]
    assert 0 < headroom["peak_abs_activation"] < 65504
    assert headroom["samples"] > 0
    assert entry["sequences"] > 0
    assert entry["token_agreement"] > 0


def entry_round_trips(bundle: Path) -> int:
    """fp32 -> fp16 -> fp32 casts anywhere in the fp16-mixed graphs (subgraphs included)."""
    import onnx
    from mindmirror.export.convert import fp16_round_trips

    total = 0
    for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
        graph = onnx.load(str(bundle / "onnx/fp16-mixed" / name)).graph
        graphs = [graph] + [a.g for n in graph.node for a in n.attribute if a.HasField("g")]
        total += sum(len(fp16_round_trips(g)) for g in graphs)
    return total


def test_ctranslate2_variant_maps_ids_through_its_vocabulary(exported):
    """fp32 CTranslate2 computes what PyTorch computes, so its parity is exact: the same greedy
    tokens on every input and the same logits over the whole vocabulary, compared in model-id
    order. Neither holds unless ids, tokens and logits are mapped right (a wrong or shifted
    mapping changes the tokens fed and read back, and puts logits under the wrong ids). int8
    only has to be sane: how far int8 GEMMs drift on a 64-wide model depends on the CPU."""
    from mindmirror.engine.ids import read_model_ids
    from mindmirror.export.ct2 import Ct2Seq2Seq
    from transformers import AutoTokenizer

    bundle, result = exported
    fp32 = result.report["variants"]["ctranslate2/fp32"]
    assert fp32["sequences"] == result.report["variants"]["onnx/fp32"]["sequences"]
    assert fp32["exact_match"] == 1.0
    assert fp32["token_agreement"] == 1.0
    assert 0 <= fp32["max_abs_logit_diff"] < 1e-3
    assert (
        fp32["logit_steps_compared"]
        == result.report["variants"]["onnx/fp32"]["logit_steps_compared"]
    )

    int8 = result.report["variants"]["ctranslate2/int8"]
    assert int8["sequences"] == fp32["sequences"]
    assert 0 < int8["token_agreement"] <= 1
    assert 0 < int8["max_abs_logit_diff"] < 5
    for divergence in int8["divergences"]:
        assert divergence["pytorch_token"] != divergence["variant_token"]

    tokenizer = AutoTokenizer.from_pretrained(bundle)
    model = Ct2Seq2Seq(bundle / "ctranslate2/int8", tokenizer, read_model_ids(bundle))
    encoded = tokenizer(_test_texts()[:3], padding=True, return_tensors="np")
    rows = model.generate(encoded["input_ids"], encoded["attention_mask"], 16)
    assert len(rows) == 3
    assert all(rows)
    assert all(0 <= t < len(tokenizer) for row in rows for t in row)
    records = load_manifest(bundle).exports["ctranslate2"]["variants"]
    assert {name: record["path"] for name, record in records.items()} == {
        "int8": "ctranslate2/int8",
        "fp32": "ctranslate2/fp32",
    }


def test_io_binding_loop_matches_the_numpy_loop(exported):
    from mindmirror.engine.decoding import Row
    from mindmirror.engine.onnx import OnnxSeq2Seq
    from transformers import AutoTokenizer

    bundle, _ = exported
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    inputs = tokenizer(_test_texts()[-4:]).input_ids
    for variant in ("fp32", "int8"):
        host = OnnxSeq2Seq.from_bundle(bundle, variant)
        device = OnnxSeq2Seq.from_bundle(bundle, variant, io_binding=True)
        assert (host.io_binding, device.io_binding) == (False, True)
        rows = [Row(ids, 24) for ids in inputs]
        assert host.generate(rows) == device.generate(rows)
        forced = device.generate([Row(ids, 24, min_new_tokens=24) for ids in inputs])
        assert [len(g.tokens) for g in forced] == [24] * 4


@pytest.mark.parametrize(
    "target", ["onnx/int8/decoder_model_merged.onnx", "onnx/fp32/encoder_model.onnx"]
)
def test_a_tampered_onnx_file_is_refused_on_load(exported, tmp_path, target):
    from mindmirror.engine.onnx import OnnxSeq2Seq

    bundle = tmp_path / "bundle"
    shutil.copytree(exported[0], bundle)
    path = bundle / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, deep inside the weights
    path.write_bytes(bytes(data))
    variant = target.split("/")[1]
    with pytest.raises(BundleError, match="checksum mismatch"):
        OnnxSeq2Seq.from_bundle(bundle, variant)
    with pytest.raises(BundleError, match=target):
        load_manifest(bundle)
    # The other variant is untouched and still loads.
    other = "fp32" if variant == "int8" else "int8"
    OnnxSeq2Seq.from_bundle(bundle, other)


def test_loading_a_variant_the_manifest_does_not_list_is_refused(exported, tmp_path):
    from mindmirror.engine.onnx import OnnxSeq2Seq

    bundle = tmp_path / "bundle"
    shutil.copytree(exported[0], bundle)
    shutil.copytree(bundle / "onnx/fp32", bundle / "onnx/sneaky")
    with pytest.raises(BundleError, match="no ONNX variant 'sneaky'"):
        OnnxSeq2Seq.from_bundle(bundle, "sneaky")


def test_a_second_export_without_force_refuses_and_keeps_the_first(exported, tmp_path, capsys):
    from mindmirror.cli import main

    bundle = tmp_path / "bundle"
    shutil.copytree(exported[0], bundle)
    before = _snapshot(bundle)
    with pytest.raises(ExportError, match="already has an export"):
        run_export(ExportOptions(bundle=bundle, progress=False))
    assert main(["export", str(bundle), "--no-progress"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert _snapshot(bundle) == before
    load_manifest(bundle)


def test_non_t5_bundle_is_refused(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["model_type"] = "bart"
    (bundle / "config.json").write_text(json.dumps(config))
    write_manifest(bundle, load_manifest(bundle, verify=False))
    with pytest.raises(ExportError, match="'bart' model"):
        run_export(ExportOptions(bundle=bundle, progress=False))
    assert not (bundle / "onnx").exists()


def test_a_modified_model_file_is_refused_before_export(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with (bundle / "model.safetensors").open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x00" * 8)
    with pytest.raises(BundleError, match=r"model\.safetensors"):
        run_export(ExportOptions(bundle=bundle, progress=False))
    assert not (bundle / "onnx").exists()


@pytest.mark.slow
def test_broken_fp32_parity_refuses_the_export(tiny_bundle, labelled_data, tmp_path):
    """A tolerance the real fp32 export cannot meet: the gate fires, nothing is written."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = _snapshot(bundle)
    with pytest.raises(ParityError, match=r"onnx/fp32: logits differ") as error:
        run_export(
            ExportOptions(
                bundle=bundle,
                variants=("fp32",),
                data=labelled_data,
                max_examples=4,
                max_explain=1,
                fp32_atol=1e-12,
                progress=False,
            )
        )
    assert "bundle is unchanged" in str(error.value)
    assert _snapshot(bundle) == before
    assert not (bundle / "onnx").exists()
    report = json.loads((bundle / FAILED_REPORT_NAME).read_text())
    assert report["passed"] is False
    assert report["variants"]["onnx/fp32"]["checks"]["max_abs_logit_diff_within_atol"] is False
    # A hidden file: never part of the bundle's checksums, so the bundle still verifies.
    load_manifest(bundle)


def _wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"export ended (status {process.returncode}) before the kill")
        time.sleep(0.05)
    raise AssertionError("export never reached the point to kill it at")


@pytest.mark.slow
def test_an_export_killed_halfway_leaves_no_half_written_onnx(exported, labelled_data, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(exported[0], bundle)
    before = _snapshot(bundle)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "mindmirror", "export", str(bundle), "--force"]
    command += ["--data", str(labelled_data), "--no-progress", "--max-explain", "2"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Halfway: the fp32 variant is written into staging, the others are being built or
        # checked; nothing has been moved into place yet.
        _wait_for(
            lambda: any(bundle.glob(".export-*/onnx/fp32/decoder_model_merged.onnx")),
            timeout=300,
            process=process,
        )
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    # The previous export is intact, byte for byte, and the whole bundle verifies.
    assert _snapshot(bundle) == before
    load_manifest(bundle)
    assert list(bundle.glob(".export-*")), "the killed export's staging dir should be hidden"

    # The next export cleans up after the killed one and succeeds.
    result = run_export(
        ExportOptions(
            bundle=bundle,
            variants=("fp32",),
            data=labelled_data,
            max_examples=4,
            max_explain=1,
            force=True,
            progress=False,
        )
    )
    assert not list(bundle.glob(".export-*"))
    assert sorted(result.manifest.exports["onnx"]["variants"]) == ["fp32"]
    assert not (bundle / "onnx/int8").exists()
    assert not (bundle / "ctranslate2").exists()
    load_manifest(bundle)
