"""CTranslate2 backend, used when the bundle carries a ``ctranslate2/<variant>`` export and the
``ctranslate2`` package is installed (``pip install 'mindmirror[ctranslate2]'``).

CTranslate2 reads and writes token strings, so rows are mapped through the variant's own
vocabulary by :class:`mindmirror.engine.vocabulary.Ct2Vocabulary` (the mapping the export's
parity check used; the tokenizer's vocabulary is the fallback when the file is absent). Like
``generate``, one ``translate_batch`` call takes one decoding configuration: a batch is split
into groups sharing (``max_new_tokens``, temperature, top-k, seed). A cancelled row is not
stopped mid-batch (CTranslate2 can only stop a whole batch), and a row's forcer is ignored:
``translate_batch`` takes a fixed target prefix but nothing that reacts to the tokens as they
come (``supports_forcing`` is false, so the service runs without the calculator here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mindmirror.engine.decoding import Row
from mindmirror.engine.vocabulary import Ct2Vocabulary
from mindmirror.service.backends.base import Backend, BackendError

__all__ = ["CTranslate2Backend"]


@dataclass
class _Packed:
    rows: Sequence[Row]
    #: (max_new_tokens, temperature, top_k, seed) -> row indices
    groups: dict[tuple[int, float, int, int | None], list[int]]
    tokens: list[list[str]]


class CTranslate2Backend(Backend[_Packed, list[tuple[list[int], list[Any]]]]):
    name = "ctranslate2"
    supports_forcing = False

    def setup(self) -> None:
        try:
            import ctranslate2
        except ImportError:
            raise BackendError(
                "the CTranslate2 backend needs ctranslate2: pip install 'mindmirror[ctranslate2]'"
            ) from None
        self._ct2 = ctranslate2
        if self.device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise BackendError("MINDMIRROR_DEVICE=cuda but CTranslate2 sees no CUDA device")
        self.translator = ctranslate2.Translator(
            str(self.spec.path),
            device=self.device,
            compute_type="default",
            intra_threads=self.spec.num_threads,
            inter_threads=1,
        )
        self.vocabulary = Ct2Vocabulary.load(
            self.spec.path, self.codec.vocabulary(), self.ids.vocab_size
        )
        self._end = self.vocabulary.tokens[self.ids.eos]

    def decode(self, rows: Sequence[Row]) -> _Packed:
        groups: dict[tuple[int, float, int, int | None], list[int]] = {}
        for index, row in enumerate(rows):
            key = (
                row.max_new_tokens,
                row.temperature,
                row.top_k if row.sampled else 1,
                row.seed if row.sampled else None,
            )
            groups.setdefault(key, []).append(index)
        tokens = [self.vocabulary.to_tokens(row.input_ids) for row in rows]
        return _Packed(rows, groups, tokens)

    def predict(self, batch: _Packed) -> list[tuple[list[int], list[Any]]]:
        results = []
        for (max_new, temperature, top_k, seed), indices in batch.groups.items():
            if temperature > 0 and seed is not None:
                self._ct2.set_random_seed(seed)
            output = self.translator.translate_batch(
                [batch.tokens[i] for i in indices],
                beam_size=1,
                max_decoding_length=max_new,
                # generate() may end at the first step; CTranslate2's default forbids that.
                min_decoding_length=0,
                # The service applies its own input limit before rows get here.
                max_input_length=0,
                sampling_topk=0 if temperature > 0 and top_k == 0 else top_k,
                sampling_temperature=temperature if temperature > 0 else 1.0,
                end_token=self._end,
            )
            results.append((indices, output))
        return results

    def encode(
        self, output: list[tuple[list[int], list[Any]]], rows: Sequence[Row]
    ) -> list[list[int]]:
        generated: list[list[int]] = [[] for _ in rows]
        for indices, results in output:
            for index, result in zip(indices, results, strict=True):
                ids = self.vocabulary.to_ids(result.hypotheses[0])
                generated[index] = self._trim(ids, rows[index])
        return generated

    def score_first(self, rows: Sequence[Row], tokens: Sequence[int]) -> list[list[float]]:
        # score_batch gives the log-probability of each target token (and of the end token
        # after it): a one-token target scores exactly that token at the first step.
        sources = [self.vocabulary.to_tokens(row.input_ids) for row in rows]
        scored: list[list[float]] = [[] for _ in rows]
        for token in tokens:
            target = self.vocabulary.to_tokens([token])
            results = self.translator.score_batch(sources, [target] * len(rows), max_input_length=0)
            for index, result in enumerate(results):
                scored[index].append(float(result.log_probs[0]))
        return scored
