"""The bundle's ``config.json``, read in one place: special token ids and vocabulary size.

Rule: ``pad_token_id``, ``eos_token_id`` and ``vocab_size`` must be there (a bundle without
them cannot be decoded correctly, and a guessed id would decode silently wrong); the decoder
starts from ``decoder_start_token_id``, or from the pad token when that is absent (T5's
convention); a list-valued ``eos_token_id`` (some configs list several) uses its first entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindmirror.student.bundle import BundleError

__all__ = ["CONFIG_NAME", "ModelIds", "read_model_config", "read_model_ids"]

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ModelIds:
    """The special token ids generation needs, and the size of the model's vocabulary."""

    pad: int
    eos: int
    decoder_start: int
    vocab_size: int

    def greedy_config(self, max_new_tokens: int, exact: bool = False) -> Any:
        """A transformers ``GenerationConfig`` for plain greedy decoding with these ids: what
        PyTorch references (parity, tests, benchmarks) decode with.

        ``exact`` forces exactly ``max_new_tokens`` (benchmarks: random-init models would stop
        at different lengths in each runtime otherwise).
        """
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens if exact else 0,
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=self.decoder_start,
            eos_token_id=self.eos,
            pad_token_id=self.pad,
        )


def read_model_config(bundle: str | Path) -> dict[str, Any]:
    """The bundle's (or a model directory's) ``config.json`` as a dict."""
    path = Path(bundle) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read {path}: {error}") from None
    if not isinstance(config, dict):
        raise BundleError(f"{path} is not a JSON object")
    return config


def read_model_ids(bundle: str | Path) -> ModelIds:
    """The special token ids of the model in ``bundle`` (see the module docstring's rule)."""
    config = read_model_config(bundle)
    path = Path(bundle) / CONFIG_NAME

    def token_id(key: str, value: Any) -> int:
        if isinstance(value, list) and value:  # several end tokens listed: T5 has one
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BundleError(f"{path} lacks a usable {key!r} entry (found {value!r})")
        return value

    pad = token_id("pad_token_id", config.get("pad_token_id"))
    start = config.get("decoder_start_token_id")
    return ModelIds(
        pad=pad,
        eos=token_id("eos_token_id", config.get("eos_token_id")),
        decoder_start=pad if start is None else token_id("decoder_start_token_id", start),
        vocab_size=token_id("vocab_size", config.get("vocab_size")),
    )
