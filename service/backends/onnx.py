"""ONNX Runtime backend: the engine's decoding loop over the bundle's ONNX variant.

Loading, session options, the decoding loop and its two cache strategies all live in
:mod:`mindmirror.engine.onnx`, the same code the export's parity check ran when it wrote
``onnx/parity.json``. Here: the backend interface around it, the device check, and the choice
of strategy: host memory (finished rows leave the batch at once) on the CPU, device memory with
IO binding on CUDA (``io_binding`` in the backend options overrides it; the test suite runs the
IO-binding strategy on the CPU device).
"""

from __future__ import annotations

from collections.abc import Sequence

from mindmirror.engine.decoding import Generation, Row
from mindmirror.engine.onnx import OnnxSeq2Seq, expected_digests
from mindmirror.service.backends.base import Backend, BackendError

__all__ = ["OnnxBackend"]


class OnnxBackend(Backend[Sequence[Row], list[Generation]]):
    name = "onnx"
    supports_forcing = True  # the engine's loop obeys each row's forcer

    def setup(self) -> None:
        try:
            import onnxruntime  # noqa: F401 -- only to say what to install
        except ImportError:
            raise BackendError(
                "the ONNX backend needs onnxruntime (CPU) or onnxruntime-gpu: "
                "pip install 'mindmirror[serve,cpu]'"
            ) from None
        spec = self.spec
        relative = spec.path.relative_to(spec.bundle).as_posix()
        io_binding = spec.options.get("io_binding")
        self.model = OnnxSeq2Seq.load(
            spec.path,
            self.ids,
            device=self.device,
            device_id=int(spec.options.get("device_id", 0)),
            threads=spec.num_threads,
            # The bytes that run are the bytes the manifest vouches for.
            expected_sha256=expected_digests(spec.bundle, spec.manifest, relative),
            io_binding=None if io_binding is None else bool(io_binding),
        )
        if self.device == "cuda" and self.model.device != "cuda":
            raise BackendError(
                "ONNX Runtime could not start its CUDA provider (is onnxruntime-gpu installed "
                "and a GPU visible?); set MINDMIRROR_DEVICE=cpu to serve on the CPU"
            )

    def decode(self, rows: Sequence[Row]) -> Sequence[Row]:
        return rows  # the engine pads the rows it runs itself

    def predict(self, batch: Sequence[Row]) -> list[Generation]:
        return self.model.generate(batch)

    def encode(self, output: list[Generation], rows: Sequence[Row]) -> list[list[int]]:
        return [generation.tokens for generation in output]

    def score_first(self, rows: Sequence[Row], tokens: Sequence[int]) -> list[list[float]]:
        return self.model.first_token_logprobs(rows, tokens).tolist()
