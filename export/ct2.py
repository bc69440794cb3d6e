"""Optional CTranslate2 conversion (``mindmirror export --ctranslate2``), and the greedy runner
the parity check and the benchmarks decode a converted model with.

CTranslate2 keeps its own vocabulary file (``shared_vocabulary.json``, token strings); ids are
mapped through it by :class:`mindmirror.engine.vocabulary.Ct2Vocabulary`, as the service's
CTranslate2 backend does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.engine.decoding import cut_after_eos
from mindmirror.engine.ids import ModelIds
from mindmirror.engine.vocabulary import VOCABULARY_NAME, Ct2Vocabulary
from mindmirror.export.errors import ExportError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CT2_VARIANTS", "Ct2Seq2Seq", "convert_ctranslate2"]

#: variant name -> CTranslate2 quantization
CT2_VARIANTS = {"fp32": "float32", "int8": "int8"}


def convert_ctranslate2(model_dir: Path, target: Path, variant: str) -> None:
    """Convert the transformers model in ``model_dir`` into a CTranslate2 directory."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise ExportError(
            "--ctranslate2 needs the ctranslate2 package: pip install 'mindmirror[ctranslate2]'"
        ) from None
    if variant not in CT2_VARIANTS:
        raise ExportError(
            f"unknown CTranslate2 variant {variant!r}; choose from {', '.join(CT2_VARIANTS)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # load_as_float16=False: the converter quantizes from the fp32 weights.
    TransformersConverter(str(model_dir), load_as_float16=False).convert(
        str(target), quantization=CT2_VARIANTS[variant], force=True
    )
    if not (target / VOCABULARY_NAME).is_file():
        raise ExportError(f"CTranslate2 wrote no {VOCABULARY_NAME} into {target}")


class Ct2Seq2Seq:
    """A CTranslate2 model directory decoded greedily from token ids (a transformers
    tokenizer gives the token strings' ids)."""

    def __init__(
        self,
        directory: str | Path,
        tokenizer: Any,
        ids: ModelIds,
        device: str = "cpu",
        compute_type: str = "default",
        threads: int = 0,
    ) -> None:
        import ctranslate2

        directory = Path(directory)
        if not (directory / VOCABULARY_NAME).is_file():
            raise ExportError(f"{directory} has no {VOCABULARY_NAME}")
        self.vocabulary = Ct2Vocabulary.load(directory, tokenizer.get_vocab(), ids.vocab_size)
        self.ids = ids
        self.translator = ctranslate2.Translator(
            str(directory), device=device, compute_type=compute_type, intra_threads=threads
        )

    def generate(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_row_logits: Callable[[int, np.ndarray], None] | None = None,
    ) -> list[list[int]]:
        """Greedy decoding, rows cut after their end token (kept, as transformers does).

        ``on_row_logits(row, steps x vocab)`` gets each row's logits in model-id order (entries
        CTranslate2 masked, e.g. the end token before ``min_new_tokens``, are ``-inf``).
        """
        source = [
            self.vocabulary.to_tokens([t for t, m in zip(row, mask, strict=True) if m])
            for row, mask in zip(input_ids, attention_mask, strict=True)
        ]
        results = self.translator.translate_batch(
            source,
            beam_size=1,
            max_decoding_length=max_new_tokens,
            # transformers allows the end token as the first token; CTranslate2's default
            # minimum of 1 would not.
            min_decoding_length=min_new_tokens,
            return_end_token=True,
            return_logits_vocab=on_row_logits is not None,
            max_input_length=0,
        )
        rows = []
        for index, result in enumerate(results):
            rows.append(cut_after_eos(self.vocabulary.to_ids(result.hypotheses[0]), self.ids.eos))
            if on_row_logits is not None:
                on_row_logits(index, self.vocabulary.logits(result.logits[0], self.ids.vocab_size))
        return rows
