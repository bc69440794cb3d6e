"""Text ↔ token ids with the light ``tokenizers`` library (no transformers in the serving image).

The bundle's ``tokenizer.json`` is what ``T5TokenizerFast.save_pretrained`` wrote, so encoding
here gives the ids training saw (its post-processor appends ``</s>``). Decoding mirrors
``tokenizer.decode(ids, skip_special_tokens=True)``, including transformers' optional clean-up
of spaces before punctuation when the bundle's ``tokenizer_config.json`` turns it on; a test
checks both against ``T5TokenizerFast``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mindmirror.engine.ids import ModelIds
from mindmirror.student.bundle import BundleError
from tokenizers import Tokenizer

__all__ = ["TextCodec"]


def _clean_up_tokenization(text: str) -> str:
    # transformers' PreTrainedTokenizerBase.clean_up_tokenization, verbatim in behaviour.
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


class TextCodec:
    """Encode model inputs and decode generated ids for one bundle."""

    def __init__(self, bundle: Path, ids: ModelIds) -> None:
        path = bundle / "tokenizer.json"
        if not path.is_file():
            raise BundleError(
                f"{bundle} has no tokenizer.json; the service reads the fast-tokenizer file "
                "(re-save the tokenizer with a recent transformers)"
            )
        self._tokenizer = Tokenizer.from_file(str(path))
        # The saved tokenizer may carry padding/truncation settings from training; the service
        # pads per batch itself and applies its own length rule.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.ids = ids
        self._clean_up = _read_clean_up_flag(bundle / "tokenizer_config.json")
        self._pieces: dict[int, str] = {}

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [encoding.ids for encoding in encodings]

    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        texts = self._tokenizer.decode_batch(
            [list(ids) for ids in sequences], skip_special_tokens=True
        )
        if self._clean_up:
            texts = [_clean_up_tokenization(text) for text in texts]
        return texts

    def continuation(self, ids: Sequence[int], prefix: str, text: str) -> list[int]:
        """The ids that write ``text`` after generated ``ids`` (whose decoded text is
        ``prefix``), tokenized as the tokenizer would tokenize it in context: the tail of
        ``prefix + text``'s ids where those start with ``ids``, else ``text``'s own ids (the
        model's ids are not always the tokenizer's own spelling of its text)."""
        whole = self._tokenizer.encode(prefix + text, add_special_tokens=False).ids
        if len(whole) > len(ids) and whole[: len(ids)] == list(ids):
            return whole[len(ids) :]
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def ends_with(self, ids: Sequence[int], char: str) -> bool:
        """Whether the text of ``ids`` may end with ``char``, read from the last token's piece
        (past a piece that is only a space): a cheap test before decoding the whole row."""
        for token in reversed(ids[-2:]):
            piece = self._piece(token)
            if piece.strip():
                return piece.rstrip().endswith(char)
        return False

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            # SentencePiece writes a space as "▁", byte-level BPE as "Ġ".
            raw = self._tokenizer.id_to_token(token) or ""
            piece = self._pieces[token] = raw.replace("▁", " ").replace("Ġ", " ")
        return piece

    def truncate(self, ids: list[int], limit: int) -> list[int]:
        """Keep the first ``limit - 1`` tokens and the end-of-sequence marker."""
        if len(ids) <= limit:
            return ids
        return [*ids[: limit - 1], self.ids.eos]

    def vocabulary(self) -> dict[str, int]:
        """Token string -> id, added tokens included (what the CTranslate2 mapping checks)."""
        return self._tokenizer.get_vocab(with_added_tokens=True)


def _read_clean_up_flag(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None
    return bool(config.get("clean_up_tokenization_spaces", False))
