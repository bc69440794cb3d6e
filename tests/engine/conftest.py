from __future__ import annotations

import warnings
from pathlib import Path

import pytest

#: the special ids of the random model below
PAD, EOS = 0, 1


@pytest.fixture(scope="session")
def random_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init T5 (built from a ``T5Config``: no training, no download) saved with
    transformers, and its optimum ONNX export (encoder + merged decoder) in ``onnx/``.

    Its outputs are arbitrary but deterministic; tests that need rows to end pick as end token
    a token the model is known to produce (see ``test_decoding.py``). Read-only.
    """
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import T5Config, T5ForConditionalGeneration

    directory = tmp_path_factory.mktemp("random-t5") / "model"
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=96,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
        # A wider initial spread than T5's default: random T5s otherwise repeat one token.
        initializer_factor=8.0,
    )
    T5ForConditionalGeneration(config).eval().save_pretrained(directory, safe_serialization=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings are about the exporter
        main_export(
            model_name_or_path=str(directory),
            output=str(directory / "onnx"),
            task="text2text-generation-with-past",
            device="cpu",
            do_validation=False,
        )
    return directory
