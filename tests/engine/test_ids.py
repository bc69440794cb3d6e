"""The one ``config.json`` reader and its fallback rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mindmirror.engine.ids import ModelIds, read_model_config, read_model_ids
from mindmirror.student.bundle import BundleError

T5 = {"model_type": "t5", "pad_token_id": 0, "eos_token_id": 1, "vocab_size": 32128}


def bundle_with(tmp_path: Path, config: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_ids_come_from_config_json(tmp_path: Path) -> None:
    config = {**T5, "decoder_start_token_id": 5}
    assert read_model_ids(bundle_with(tmp_path, config)) == ModelIds(0, 1, 5, 32128)
    assert read_model_config(tmp_path)["model_type"] == "t5"


def test_decoder_starts_from_pad_and_a_listed_end_token_uses_the_first(tmp_path: Path) -> None:
    config = {**T5, "pad_token_id": 3, "eos_token_id": [2, 7]}
    assert read_model_ids(bundle_with(tmp_path, config)) == ModelIds(3, 2, 3, 32128)


@pytest.mark.parametrize("key", ["pad_token_id", "eos_token_id", "vocab_size"])
def test_a_missing_id_is_named_not_guessed(tmp_path: Path, key: str) -> None:
    config = {k: v for k, v in T5.items() if k != key}
    with pytest.raises(BundleError, match=f"lacks a usable '{key}'"):
        read_model_ids(bundle_with(tmp_path, config))


@pytest.mark.parametrize("value", [None, "1", True, [], 1.5])
def test_an_unusable_id_is_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(BundleError, match="'eos_token_id'"):
        read_model_ids(bundle_with(tmp_path, {**T5, "eos_token_id": value}))


def test_unreadable_configs_are_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        read_model_ids(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        read_model_config(tmp_path)
    with pytest.raises(BundleError, match="not a JSON object"):
        read_model_config(bundle_with(tmp_path, [1, 2]))


def test_greedy_config_uses_the_ids() -> None:
    pytest.importorskip("transformers")
    config = ModelIds(pad=0, eos=1, decoder_start=0, vocab_size=10).greedy_config(7, exact=True)
    assert (config.max_new_tokens, config.min_new_tokens) == (7, 7)
    assert (config.do_sample, config.num_beams) == (False, 1)
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (0, 1, 0)
    assert ModelIds(0, 1, 0, 10).greedy_config(7).min_new_tokens == 0
