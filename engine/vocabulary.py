"""Model token ids <-> CTranslate2 token strings, through the variant's own vocabulary file.

CTranslate2 reads and writes token *strings*. Its converter writes ``shared_vocabulary.json``
in the order of the model's embedding rows: the tokenizer's tokens sorted by id, then filler
names up to the model's vocabulary size (T5 pads its embedding matrix past the tokenizer;
the fillers may repeat real token names, e.g. ``<extra_id_0>``). CTranslate2's index of a
token is therefore the model's id of it: ids map to strings by position, strings map back to
their first position, and the logits CTranslate2 returns are already in model-id order.
Loading checks that premise against the tokenizer, so a vocabulary from another model or
tokenizer is refused instead of decoding silently wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mindmirror.student.bundle import BundleError

__all__ = ["VOCABULARY_NAME", "Ct2Vocabulary"]

VOCABULARY_NAME = "shared_vocabulary.json"

#: CTranslate2 masks a token (e.g. the end token before ``min_decoding_length``) with the
#: lowest float, not -inf
_MASKED = -1e30


class Ct2Vocabulary:
    """CTranslate2's token strings, indexed by model token id."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = [str(token) for token in tokens]
        self._ids: dict[str, int] = {}
        for token_id, token in enumerate(self.tokens):
            self._ids.setdefault(token, token_id)  # a repeated string maps to its first id

    @classmethod
    def load(
        cls, directory: str | Path, tokenizer: Mapping[str, int], vocab_size: int
    ) -> Ct2Vocabulary:
        """The vocabulary of the CTranslate2 model in ``directory``.

        ``tokenizer``: the model tokenizer's token -> id map (added tokens included). Without a
        ``shared_vocabulary.json`` the tokenizer's own tokens stand in, ``<unused_N>`` for ids
        it does not know.
        """
        path = Path(directory) / VOCABULARY_NAME
        by_id = {int(token_id): token for token, token_id in tokenizer.items()}
        if not path.is_file():
            return cls([by_id.get(i, f"<unused_{i}>") for i in range(vocab_size)])
        try:
            tokens = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BundleError(f"cannot read {path}: {error}") from None
        if not isinstance(tokens, list):
            raise BundleError(f"{path} is not a list of token strings")
        for token_id, token in sorted(by_id.items()):
            found = tokens[token_id] if token_id < len(tokens) else None
            if found != token:
                raise BundleError(
                    f"{path} has {found!r} at id {token_id}, where the tokenizer has {token!r}: "
                    "the CTranslate2 model was converted from another model or tokenizer"
                )
        return cls(tokens)

    def to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[int(token_id)] for token_id in ids]

    def to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._ids[token] for token in tokens]

    def logits(self, steps: Sequence[Any], width: int) -> np.ndarray:
        """CTranslate2's per-step logits of one hypothesis as ``steps x width`` float32 in
        model-id order; entries it masked, and ids it has no entry for, are ``-inf``."""
        logits = np.full((len(steps), width), -np.inf, dtype=np.float32)
        if not len(steps):
            return logits
        rows = np.stack([np.asarray(step, dtype=np.float32) for step in steps])
        known = min(width, rows.shape[1])
        logits[:, :known] = rows[:, :known]
        logits[logits < _MASKED] = -np.inf
        return logits
