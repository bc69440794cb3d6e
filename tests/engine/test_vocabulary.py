"""Model token ids <-> CTranslate2 token strings (no CTranslate2 needed: the file is JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mindmirror.engine.vocabulary import VOCABULARY_NAME, Ct2Vocabulary
from mindmirror.student.bundle import BundleError

TOKENIZER = {"<pad>": 0, "</s>": 1, "<unk>": 2, "▁a": 3, "▁b": 4, "<extra_id_0>": 5}
#: what the T5 converter writes: tokenizer tokens by id, then fillers up to the vocabulary
#: size, which may repeat a real token's name
CONVERTED = ["<pad>", "</s>", "<unk>", "▁a", "▁b", "<extra_id_0>", "<extra_id_0>", "<extra_id_1>"]


def written(tmp_path: Path, tokens: list[str]) -> Path:
    (tmp_path / VOCABULARY_NAME).write_text(json.dumps(tokens))
    return tmp_path


def test_ids_map_by_position_and_strings_back_to_their_first_id(tmp_path: Path) -> None:
    vocabulary = Ct2Vocabulary.load(written(tmp_path, CONVERTED), TOKENIZER, 8)
    assert vocabulary.to_tokens([3, 4, 1]) == ["▁a", "▁b", "</s>"]
    assert vocabulary.to_ids(["▁b", "▁a", "</s>"]) == [4, 3, 1]
    # A filler that repeats a real token's name reads back as the real token.
    assert vocabulary.to_ids([vocabulary.tokens[6], "<extra_id_1>"]) == [5, 7]


@pytest.mark.parametrize(
    "tokens",
    [
        ["<pad>", "</s>", "<unk>", "▁b", "▁a", "<extra_id_0>"],  # two tokens swapped
        ["</s>", "<unk>", "▁a", "▁b", "<extra_id_0>", "<pad>"],  # shifted by one
        ["<pad>", "</s>", "<unk>", "▁a", "▁b"],  # a tokenizer token missing
    ],
)
def test_a_vocabulary_that_disagrees_with_the_tokenizer_is_refused(
    tmp_path: Path, tokens: list[str]
) -> None:
    with pytest.raises(BundleError, match="converted from another model or tokenizer"):
        Ct2Vocabulary.load(written(tmp_path, tokens), TOKENIZER, 8)


def test_without_the_file_the_tokenizer_stands_in(tmp_path: Path) -> None:
    vocabulary = Ct2Vocabulary.load(tmp_path, TOKENIZER, 8)
    assert vocabulary.tokens == [*CONVERTED[:6], "<unused_6>", "<unused_7>"]


def test_logits_come_back_in_model_id_order_with_masks_as_minus_inf(tmp_path: Path) -> None:
    vocabulary = Ct2Vocabulary.load(written(tmp_path, CONVERTED), TOKENIZER, 8)
    lowest = float(np.finfo(np.float32).min)
    steps = [[0.5, lowest, 1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 7]
    logits = vocabulary.logits(steps, width=8)
    assert logits.shape == (2, 8)
    assert logits[0, :7].tolist() == [0.5, -np.inf, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert logits[:, 7].tolist() == [-np.inf, -np.inf]  # no CTranslate2 entry for id 7
    assert vocabulary.logits([], width=8).shape == (0, 8)
