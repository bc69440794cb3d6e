"""ONNX Runtime sessions as the engine creates them: options, verified bytes, model checks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from mindmirror.engine.ids import read_model_ids
from mindmirror.engine.onnx import (
    DECODER_FILE,
    ENCODER_FILE,
    GraphRunner,
    OnnxSeq2Seq,
    load_sessions,
    session_options,
)
from mindmirror.student.bundle import BundleError


def digests(directory: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in (ENCODER_FILE, DECODER_FILE)
    }


def test_session_options_are_the_serving_ones() -> None:
    import onnxruntime as ort

    options = session_options(threads=3)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.log_severity_level == 3
    assert session_options().intra_op_num_threads == 0  # ONNX Runtime's own default


def test_verified_bytes_load_and_tampered_bytes_are_refused(
    random_t5: Path, tmp_path: Path
) -> None:
    encoder, decoder = load_sessions(
        random_t5 / "onnx", expected_sha256=digests(random_t5 / "onnx")
    )
    assert encoder.get_providers() == ["CPUExecutionProvider"]
    assert "use_cache_branch" in [i.name for i in decoder.get_inputs()]
    copy = tmp_path / "onnx"
    shutil.copytree(random_t5 / "onnx", copy)
    expected = digests(copy)
    data = bytearray((copy / DECODER_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / DECODER_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"checksum mismatch for .*{DECODER_FILE}"):
        load_sessions(copy, expected_sha256=expected)
    (copy / ENCODER_FILE).unlink()
    with pytest.raises(BundleError, match=f"{ENCODER_FILE} not found"):
        load_sessions(copy)


def test_a_decoder_without_past_key_values_is_refused(random_t5: Path) -> None:
    encoder, _ = load_sessions(random_t5 / "onnx")
    with pytest.raises(BundleError, match="not a merged decoder with past key values"):
        OnnxSeq2Seq(encoder, encoder, read_model_ids(random_t5))  # the encoder as decoder


def test_graph_runner_returns_every_output_by_name(random_t5: Path) -> None:
    runner = GraphRunner((random_t5 / "onnx" / ENCODER_FILE).read_bytes())
    ids = np.array([[5, 6, 1]], dtype=np.int64)
    outputs = runner({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert list(outputs) == ["last_hidden_state"]
    assert outputs["last_hidden_state"].shape == (1, 3, 32)
