"""The one small interface every inference runtime implements.

A backend turns rows of input token ids into rows of generated token ids, nothing more: it
never sees HTTP, text, queues or tasks. The contract follows LitServe's ``decode → predict →
encode``: :meth:`Backend.decode` packs the rows into the runtime's native batch (padded arrays,
tensors, token strings), :meth:`Backend.predict` is the model call, :meth:`Backend.encode`
unpacks the native output back into one id list per row. All three run on the model worker
thread (see :mod:`mindmirror.service.batching`), never on the event loop. A request row is the
engine's :class:`mindmirror.engine.decoding.Row`.

Generated ids exclude the decoder start token and the end-of-sequence token, and are cut at
each row's own ``max_new_tokens``. Besides generation, a backend scores: :meth:`Backend.score_first`
gives the first step's log-probabilities of a few tokens (the verdict words).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from mindmirror.engine.decoding import Row
from mindmirror.engine.ids import ModelIds
from mindmirror.service.text import TextCodec
from mindmirror.student.bundle import Manifest
from mindmirror.student.errors import MindmirrorError

__all__ = ["Backend", "BackendError", "BackendSpec"]

Native = TypeVar("Native")
Output = TypeVar("Output")


class BackendError(MindmirrorError, RuntimeError):
    """The requested backend cannot run here (not installed, no export, wrong device...)."""


@dataclass(frozen=True)
class BackendSpec:
    """Everything a backend needs to load: resolved by
    :func:`mindmirror.service.backends.resolve`."""

    name: str
    device: str
    variant: str | None
    bundle: Path
    #: folder of the variant's files (the bundle itself for PyTorch)
    path: Path
    manifest: Manifest
    ids: ModelIds
    num_threads: int = 0
    options: dict[str, Any] = field(default_factory=dict)


class Backend(ABC, Generic[Native, Output]):
    """Base class of the runtimes. Subclasses implement setup/decode/predict/encode."""

    name: ClassVar[str]
    #: whether the runtime obeys a row's ``forcer`` (:data:`mindmirror.engine.decoding.Forcer`);
    #: a backend that cannot ignores it, and the service then turns the calculator off
    supports_forcing: ClassVar[bool] = False

    def __init__(self, spec: BackendSpec, codec: TextCodec) -> None:
        self.spec = spec
        self.codec = codec
        self.ids = spec.ids

    @property
    def device(self) -> str:
        return self.spec.device

    @property
    def variant(self) -> str:
        return self.spec.variant or "safetensors"

    @abstractmethod
    def setup(self) -> None:
        """Load the model (sessions, weights) on the device. Called once, on the worker."""

    @abstractmethod
    def decode(self, rows: Sequence[Row]) -> Native:
        """Pack rows into the runtime's native batch."""

    @abstractmethod
    def predict(self, batch: Native) -> Output:
        """Run generation on a packed batch."""

    @abstractmethod
    def encode(self, output: Output, rows: Sequence[Row]) -> list[list[int]]:
        """Unpack the runtime's output into generated ids, one list per row, in row order."""

    def __call__(self, rows: Sequence[Row]) -> list[list[int]]:
        if not rows:
            return []
        return self.encode(self.predict(self.decode(rows)), rows)

    @abstractmethod
    def score_first(self, rows: Sequence[Row], tokens: Sequence[int]) -> list[list[float]]:
        """Log-probability (log-softmax over the vocabulary) of each of ``tokens`` as the first
        generated token of each row: what scored verdicts read
        (:mod:`mindmirror.student.verdict_scores`). Every runtime computes the same numbers;
        the export's parity check compares them."""

    def close(self) -> None:
        """Release the runtime's resources."""

    # Shared helper: cut a generated sequence at EOS and at the row's own budget.
    def _trim(self, ids: Sequence[int], row: Row) -> list[int]:
        out: list[int] = []
        for token in ids:
            if token == self.ids.eos or len(out) >= row.max_new_tokens:
                break
            out.append(int(token))
        return out
