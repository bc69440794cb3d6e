"""The one decoding loop: rows of input ids in, generated ids out, one decoder step at a time.

The loop owns every decision about tokens: which token each row takes (argmax, a sample from
the row's own seeded generator, or what the row's :data:`Forcer` dictates), when a row is
finished (its end token, its own ``max_new_tokens``, or its ``cancelled`` event), and that
finished rows leave the batch. What a
decoder step costs and where its tensors live is a :class:`StepCache`'s business: the loop only
asks it for the next logits of the rows still running, and tells it which of them go on. ONNX
Runtime's host-memory and device-memory caches (:mod:`mindmirror.engine.onnx`) are two such
strategies of this same loop.

Generated ids exclude the decoder start token and the end token; :meth:`Generation.with_end`
gives them as transformers' ``generate`` does (end token kept), which is what parity compares.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from mindmirror.engine.ids import ModelIds

__all__ = [
    "Forcer",
    "Generation",
    "Row",
    "Sampler",
    "StepCache",
    "StepObserver",
    "cut_after_eos",
    "first_token_logprobs",
    "generate",
    "log_softmax",
    "pad_rows",
    "rows_from_arrays",
]

#: called after every decoder step with (step, the original indices of the rows that ran it,
#: their logits: rows x vocabulary, float32, before any end-token suppression)
StepObserver = Callable[[int, np.ndarray, np.ndarray], None]

Finish = Literal["eos", "length", "cancelled"]

#: called with a row's generated ids after each token it appends (never while tokens it asked
#: for are still queued); returns the ids the row must take next (often none). The service's
#: calculator is one: after "10 + 9 =" it forces the ids of " 19".
Forcer = Callable[[Sequence[int]], Sequence[int]]


@dataclass(eq=False)
class Row:
    """One generation: an encoded input and how to decode it."""

    input_ids: list[int]
    max_new_tokens: int
    #: 0 = greedy; > 0 = sample from softmax(logits / temperature)
    temperature: float = 0.0
    #: sample among the k most likely tokens (0 = all); ignored when greedy
    top_k: int = 0
    seed: int | None = None
    #: set by the service (its batcher and request state) when nobody waits for the answer any
    #: more (client gone, deadline passed); the loop stops the row at its next step
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: the end token is not chosen for this many steps (transformers' ``min_new_tokens``): the
    #: benchmarks force a fixed number of steps with it
    min_new_tokens: int = 0
    #: dictates tokens to this row (see :data:`Forcer`); forced tokens count towards
    #: ``max_new_tokens`` like chosen ones
    forcer: Forcer | None = None

    @property
    def sampled(self) -> bool:
        return self.temperature > 0


@dataclass(frozen=True)
class Generation:
    """What one row generated, and why it stopped."""

    #: generated ids, without the decoder start token and the end token
    tokens: list[int]
    finish: Finish

    def with_end(self, eos: int) -> list[int]:
        """The ids as transformers' ``generate`` returns them: cut after the end token, kept."""
        return [*self.tokens, eos] if self.finish == "eos" else list(self.tokens)


class StepCache(Protocol):
    """One batch's encoder output and key/value caches: runs decoder steps for the live rows."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed each live row its last token (live rows x 1, int64); their next logits
        (live rows x vocabulary, float32)."""
        ...

    def keep(self, keep: np.ndarray) -> None:
        """Only the live rows where ``keep`` (bool, one per live row) is true go on."""
        ...


def cut_after_eos(tokens: Sequence[int], eos: int) -> list[int]:
    """Cut a generated row after its first end token (kept, as transformers does)."""
    tokens = [int(t) for t in tokens]
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def pad_rows(rows: Sequence[Row], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``input_ids`` and ``attention_mask`` (int64, rows x longest input)."""
    width = max(len(row.input_ids) for row in rows)
    input_ids = np.full((len(rows), width), pad, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        input_ids[index, : len(row.input_ids)] = row.input_ids
        attention_mask[index, : len(row.input_ids)] = 1
    return input_ids, attention_mask


def rows_from_arrays(
    input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int, min_new_tokens: int = 0
) -> list[Row]:
    """Greedy rows from a padded batch (a tokenizer's ``input_ids`` and ``attention_mask``)."""
    return [
        Row(ids[mask.astype(bool)].tolist(), max_new_tokens, min_new_tokens=min_new_tokens)
        for ids, mask in zip(np.asarray(input_ids), np.asarray(attention_mask), strict=True)
    ]


class Sampler:
    """Greedy argmax, or per-row temperature/top-k sampling with the row's own generator.

    A row's generator (``np.random.default_rng(row.seed)``) draws once per step the row runs,
    so a seeded row's sample does not depend on which other rows share its batch. It draws on a
    step whose token is forced too (the loop then discards the draw): the stream stays one draw
    per step, and a seeded row with a forcer is as repeatable as one without.
    """

    def __init__(self, rows: Sequence[Row], eos: int) -> None:
        self.rows = rows
        self.eos = eos
        self.any_sampled = any(row.sampled for row in rows)
        self.generators = [np.random.default_rng(row.seed) if row.sampled else None for row in rows]
        self.longest_minimum = max((row.min_new_tokens for row in rows), default=0)

    def choose(self, step: int, logits: np.ndarray, live: np.ndarray) -> np.ndarray:
        """The next token of each live row (``live``: their indices in ``rows``)."""
        if step < self.longest_minimum:
            early = [p for p, i in enumerate(live.tolist()) if step < self.rows[i].min_new_tokens]
            if early:
                logits = logits.copy()
                logits[early, self.eos] = -np.inf
        tokens = logits.argmax(axis=-1).astype(np.int64)
        if not self.any_sampled:
            return tokens
        for position, index in enumerate(live.tolist()):
            row = self.rows[index]
            generator = self.generators[index]
            if generator is None:
                continue
            scores = logits[position].astype(np.float64) / row.temperature
            candidates = np.arange(scores.shape[0])
            if 0 < row.top_k < scores.shape[0]:
                candidates = np.argpartition(-scores, row.top_k)[: row.top_k]
                scores = scores[candidates]
            scores = np.exp(scores - scores.max())
            tokens[position] = candidates[
                generator.choice(scores.shape[0], p=scores / scores.sum())
            ]
        return tokens


def generate(
    rows: Sequence[Row],
    start: Callable[[np.ndarray, np.ndarray], StepCache],
    ids: ModelIds,
    observer: StepObserver | None = None,
) -> list[Generation]:
    """Decode ``rows`` together; one :class:`Generation` per row, in row order.

    ``start(input_ids, attention_mask)`` encodes the padded batch of the rows that run and
    returns their :class:`StepCache`. A row stops at its end token (not kept), at its own
    ``max_new_tokens``, or at the first step after its ``cancelled`` event is set; from then on
    it leaves the batch. A row's queued forced ids replace the sampler's choice one step each,
    and the cache is fed what the row took, so the steps after a forced token are exactly those
    of a decoder that had chosen it.
    """
    tokens_of: list[list[int]] = [[] for _ in rows]
    forced: list[deque[int]] = [deque() for _ in rows]
    finish: list[Finish] = ["length"] * len(rows)
    for index, row in enumerate(rows):
        if row.cancelled.is_set():
            finish[index] = "cancelled"
    # Rows with nothing to do never reach the model.
    live = np.array(
        [i for i, row in enumerate(rows) if row.max_new_tokens > 0 and finish[i] == "length"],
        dtype=np.int64,
    )
    if len(live):
        running = [rows[i] for i in live.tolist()]
        cache = start(*pad_rows(running, ids.pad))
        sampler = Sampler(rows, ids.eos)
        tokens = np.full((len(live), 1), ids.decoder_start, dtype=np.int64)
        for step in range(max(row.max_new_tokens for row in running)):
            logits = cache.step(tokens)
            if observer is not None:
                observer(step, live, logits)
            chosen = sampler.choose(step, logits, live)
            keep = np.ones(len(live), dtype=bool)
            for position, index in enumerate(live.tolist()):
                row = rows[index]
                if forced[index]:
                    chosen[position] = forced[index].popleft()
                token = int(chosen[position])
                if row.cancelled.is_set():
                    finish[index], keep[position] = "cancelled", False
                elif token == ids.eos:
                    finish[index], keep[position] = "eos", False
                else:
                    tokens_of[index].append(token)
                    keep[position] = len(tokens_of[index]) < row.max_new_tokens
                    if keep[position] and row.forcer is not None and not forced[index]:
                        forced[index].extend(int(t) for t in row.forcer(tuple(tokens_of[index])))
            if not keep.any():
                break
            if not keep.all():
                live, chosen = live[keep], chosen[keep]
                cache.keep(keep)
            tokens = chosen.reshape(-1, 1)
    return [Generation(t, f) for t, f in zip(tokens_of, finish, strict=True)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (a float32 logit row of a large
    vocabulary loses the small probabilities otherwise)."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def first_token_logprobs(
    rows: Sequence[Row],
    start: Callable[[np.ndarray, np.ndarray], StepCache],
    ids: ModelIds,
    tokens: Sequence[int],
) -> np.ndarray:
    """The log-probability of each of ``tokens`` as the first generated token of each row
    (rows x tokens, float64): one encoder pass and one decoder step, through the same loop as
    generation. A cancelled row is not run; its row is NaN."""
    scored = np.full((len(rows), len(tokens)), np.nan)
    columns = np.asarray(tokens, dtype=np.int64)

    def observe(step: int, live: np.ndarray, logits: np.ndarray) -> None:
        if step == 0:
            scored[live] = log_softmax(logits)[:, columns]

    one_step = [Row(row.input_ids, 1, cancelled=row.cancelled) for row in rows]
    generate(one_step, start, ids, observe)
    return scored
