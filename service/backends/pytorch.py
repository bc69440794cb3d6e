"""PyTorch backend: the reference runtime, ``T5ForConditionalGeneration.generate``.

Optional: the serving image has no torch. It is what ``auto`` falls back to for a bundle that
was never exported, and the ground truth the ONNX and CTranslate2 backends are tested against.
Weights load from ``model.safetensors`` only.

``generate`` takes one decoding configuration per call, so a batch is split into groups of rows
that share temperature and top-k; every group decodes to its longest ``max_new_tokens`` and each
row is cut at its own. Cancelled rows are stopped by a stopping criterion at the next step. A
row's forcer (:data:`mindmirror.engine.decoding.Forcer`) is a logits processor here: it is
consulted as the engine's loop consults it, and a forced step leaves only the forced token a
finite score, so greedy rows with a forcer give the engine's tokens exactly.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mindmirror.engine.decoding import Row
from mindmirror.service.backends.base import Backend, BackendError

__all__ = ["PyTorchBackend", "prefer_passive_openmp"]


def prefer_passive_openmp() -> None:
    """Make torch's idle OpenMP threads sleep rather than spin, unless the user chose.

    Read once, when torch loads its OpenMP runtime, so this runs before the first ``import
    torch`` of the serving process. Spinning threads burn the CPU the next operator (or the
    event loop) needs under a container CPU limit or on a shared host: measured with one
    competing busy process on 2 cores, a t5-small predict took 622 ms spinning, 214 ms passive.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass
class _Group:
    indices: list[int]
    input_ids: Any  # torch.Tensor
    attention_mask: Any
    temperature: float
    top_k: int
    seed: int | None


@dataclass
class _Packed:
    rows: Sequence[Row]
    groups: list[_Group]


class PyTorchBackend(Backend[_Packed, list[tuple[_Group, Any]]]):
    name = "pytorch"
    supports_forcing = True

    def setup(self) -> None:
        prefer_passive_openmp()
        try:
            import torch
            from transformers import T5ForConditionalGeneration
        except ImportError:
            raise BackendError(
                "the PyTorch backend needs torch and transformers (pip install "
                "'mindmirror[train]'); the serving image uses the ONNX backend instead"
            ) from None
        self._torch = torch
        if self.spec.num_threads:
            torch.set_num_threads(self.spec.num_threads)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendError("MINDMIRROR_DEVICE=cuda but torch sees no CUDA device")
        # A bundle is self-contained: never reach for a model hub while loading one.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = T5ForConditionalGeneration.from_pretrained(self.spec.path, use_safetensors=True)
        self.model = model.to(self.device).eval()
        self._stopping: Any = _stopping_criteria()
        self._forcing: Any = _forcing_processor()

    def decode(self, rows: Sequence[Row]) -> _Packed:
        torch = self._torch
        groups: dict[tuple[float, int, int | None], list[int]] = {}
        for index, row in enumerate(rows):
            key = (row.temperature, row.top_k if row.sampled else 0, row.seed)
            groups.setdefault(key, []).append(index)
        packed = []
        for (temperature, top_k, seed), indices in groups.items():
            width = max(len(rows[i].input_ids) for i in indices)
            input_ids = torch.full((len(indices), width), self.ids.pad, dtype=torch.long)
            attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
            for position, index in enumerate(indices):
                ids = rows[index].input_ids
                input_ids[position, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention_mask[position, : len(ids)] = 1
            packed.append(
                _Group(
                    indices,
                    input_ids.to(self.device),
                    attention_mask.to(self.device),
                    temperature,
                    top_k,
                    seed,
                )
            )
        return _Packed(rows, packed)

    def predict(self, batch: _Packed) -> list[tuple[_Group, Any]]:
        torch = self._torch
        rows = batch.rows
        results = []
        for group in batch.groups:
            max_new = max(rows[i].max_new_tokens for i in group.indices)
            kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1}
            if group.temperature > 0:
                kwargs = {
                    "do_sample": True,
                    "temperature": group.temperature,
                    "top_k": group.top_k or None,
                    "num_beams": 1,
                }
                if group.seed is not None:
                    torch.manual_seed(group.seed)
            stop = self._stopping([rows[i].cancelled for i in group.indices])
            group_rows = [rows[i] for i in group.indices]
            if any(row.forcer is not None for row in group_rows):
                kwargs["logits_processor"] = self._forcing(group_rows, self.ids.eos)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=group.input_ids,
                    attention_mask=group.attention_mask,
                    max_new_tokens=max_new,
                    stopping_criteria=stop,
                    pad_token_id=self.ids.pad,
                    eos_token_id=self.ids.eos,
                    decoder_start_token_id=self.ids.decoder_start,
                    **kwargs,
                )
            results.append((group, output.cpu()))
        return results

    def encode(self, output: list[tuple[_Group, Any]], rows: Sequence[Row]) -> list[list[int]]:
        generated: list[list[int]] = [[] for _ in rows]
        for group, sequences in output:
            for position, index in enumerate(group.indices):
                # generate() returns the decoder start token first.
                generated[index] = self._trim(sequences[position, 1:].tolist(), rows[index])
        return generated

    def score_first(self, rows: Sequence[Row], tokens: Sequence[int]) -> list[list[float]]:
        torch = self._torch
        scored: list[list[float]] = [[] for _ in rows]
        # One forward pass of the decoder start token per group; sampling settings do not
        # matter to a score, so one group would do, but decode() already pads per group.
        for group in self.decode(rows).groups:
            start = torch.full(
                (len(group.indices), 1), self.ids.decoder_start, dtype=torch.long
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=group.input_ids,
                    attention_mask=group.attention_mask,
                    decoder_input_ids=start,
                ).logits[:, 0, :]
            logprobs = torch.log_softmax(logits.double(), dim=-1)[:, list(tokens)].cpu()
            for position, index in enumerate(group.indices):
                scored[index] = logprobs[position].tolist()
        return scored


def _stopping_criteria() -> Any:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CancelledRows(StoppingCriteria):
        def __init__(self, events: list[Any]) -> None:
            self.events = events

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            flags = [event.is_set() for event in self.events]
            return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)

    return lambda events: StoppingCriteriaList([CancelledRows(events)])


def _forcing_processor() -> Any:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class ForcedTokens(LogitsProcessor):
        """The engine loop's forcing: after each token a row appends, with nothing queued and
        budget left, its forcer is asked for the ids to take next; a queued id is then the only
        token with a finite score. (transformers runs custom processors before temperature and
        top-k, which keep the lone finite score; sampling still draws, as the engine does.)"""

        def __init__(self, rows: Sequence[Row], eos: int) -> None:
            self.rows = rows
            self.eos = eos
            self.queues: list[deque[int]] = [deque() for _ in rows]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            generated = input_ids.shape[1] - 1  # generate() starts with the decoder start token
            for position, row in enumerate(self.rows):
                if row.forcer is None:
                    continue
                queue = self.queues[position]
                if not queue and 0 < generated < row.max_new_tokens:
                    ids = input_ids[position, 1:].tolist()
                    if self.eos not in ids:  # a finished row is only padded from here on
                        queue.extend(int(t) for t in row.forcer(tuple(ids)))
                if queue:
                    token = queue.popleft()
                    scores[position] = -torch.inf
                    scores[position, token] = 0.0
            return scores

    return lambda rows, eos: LogitsProcessorList([ForcedTokens(rows, eos)])
