"""ONNX Runtime backend: batched greedy (or sampled) decoding with past key values.

The bundle's ONNX variant holds optimum's two graphs: ``encoder_model.onnx`` (``input_ids``,
``attention_mask`` → ``last_hidden_state``) and ``decoder_model_merged.onnx``, which holds the
first-step and the cached-step decoder behind an ``If`` on ``use_cache_branch``. The loop:

1. run the encoder once for the whole batch;
2. step 0: the decoder reads the start token with an empty cache (``use_cache_branch=False``)
   and returns, besides the logits, the self-attention cache (``present.N.decoder.*``) and the
   cross-attention keys/values of the encoder states (``present.N.encoder.*``);
3. every later step feeds one token per row plus the caches (``use_cache_branch=True``); the
   cross-attention cache from step 0 never changes, the self-attention cache grows by one.

Rows stop at their end-of-sequence token, at their own ``max_new_tokens``, or when cancelled.
On the CPU path finished rows are dropped from the batch at once (every cached array is
index-selected), so a batch of mixed lengths does not keep paying for rows that are done.

With ``onnxruntime-gpu`` the CUDA path uses IO binding: encoder states and caches stay on the
GPU between steps as ``OrtValue``s and only the logits (batch × vocabulary floats per step) come
back to the host. That path cannot index-select device memory without a tensor library, so
finished rows ride along until the batch ends. It was developed without a GPU: the same
IO-binding code runs in the test suite on the CPU device (``io_binding=True``), and the CUDA
provider itself is exercised only where a GPU is present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mindmirror.service.backends.base import Backend, BackendError, Row

__all__ = ["DECODER_FILE", "ENCODER_FILE", "OnnxBackend"]

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"

_PAST_PREFIX = "past_key_values."
_PRESENT_PREFIX = "present."
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


@dataclass
class _Batch:
    rows: Sequence[Row]
    input_ids: np.ndarray  # (n, L) int64, right-padded
    attention_mask: np.ndarray  # (n, L) int64


class OnnxBackend(Backend[_Batch, list[list[int]]]):
    name = "onnx"

    def setup(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(
                "the ONNX backend needs onnxruntime (CPU) or onnxruntime-gpu: "
                "pip install 'mindmirror[serve,cpu]'"
            ) from None
        self._ort = ort
        path = self.spec.path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.spec.num_threads:
            options.intra_op_num_threads = self.spec.num_threads
        # One model call at a time per process (see service.batching): parallelism across
        # operators only adds thread contention.
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: under a container CPU limit (or on a
        # shared host) spinning burns the quota the next operator needs. Measured on a busy
        # 2-core host: a t5-small encoder pass took 86 ms spinning, 50 ms not.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime prints its own warnings straight to stderr, outside the JSON logs; keep
        # errors only.
        options.log_severity_level = 3
        if self.device == "cuda":
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": self._device_id}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(path / ENCODER_FILE), options, providers=providers)
        self.decoder = ort.InferenceSession(str(path / DECODER_FILE), options, providers=providers)
        if self.device == "cuda" and "CUDAExecutionProvider" not in self.decoder.get_providers():
            raise BackendError(
                "ONNX Runtime could not start its CUDA provider (is onnxruntime-gpu installed "
                "and a GPU visible?); set MINDMIRROR_DEVICE=cpu to serve on the CPU"
            )
        self._inspect_decoder()
        self._io_binding = bool(self.spec.options.get("io_binding", self.device == "cuda"))

    @property
    def _device_id(self) -> int:
        return int(self.spec.options.get("device_id", 0))

    def _inspect_decoder(self) -> None:
        inputs = {item.name: item for item in self.decoder.get_inputs()}
        required = {"input_ids", "encoder_hidden_states", "encoder_attention_mask"}
        missing = required - inputs.keys()
        if missing or "use_cache_branch" not in inputs:
            raise BackendError(
                f"{self.spec.path / DECODER_FILE} is not a merged decoder with past key values "
                f"(missing inputs: {sorted(missing | ({'use_cache_branch'} - inputs.keys()))}); "
                "export with task text2text-generation-with-past"
            )
        self._past_names = [name for name in inputs if name.startswith(_PAST_PREFIX)]
        if not self._past_names:
            raise BackendError(f"{self.spec.path / DECODER_FILE} has no past_key_values inputs")
        self._output_names = [item.name for item in self.decoder.get_outputs()]
        if self._output_names[0] != "logits":
            raise BackendError(f"{self.spec.path / DECODER_FILE}: first output is not logits")
        # present.N.decoder.key -> past_key_values.N.decoder.key
        self._past_for_output = {
            name: _PAST_PREFIX + name[len(_PRESENT_PREFIX) :]
            for name in self._output_names[1:]
            if name.startswith(_PRESENT_PREFIX)
        }
        sample = inputs[self._past_names[0]]
        self._cache_dtype = _ORT_TYPES.get(sample.type)
        if self._cache_dtype is None:
            raise BackendError(f"unsupported cache type {sample.type} in {DECODER_FILE}")
        heads, head_dim = sample.shape[1], sample.shape[3]
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise BackendError(f"{DECODER_FILE}: cache inputs have no static heads/head size")
        self._heads, self._head_dim = heads, head_dim
        hidden = inputs["encoder_hidden_states"]
        self._hidden_dtype = _ORT_TYPES.get(hidden.type, np.float32)

    # ----- decode → predict → encode ---------------------------------------------------------
    def decode(self, rows: Sequence[Row]) -> _Batch:
        width = max(len(row.input_ids) for row in rows)
        input_ids = np.full((len(rows), width), self.ids.pad, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row.input_ids)] = row.input_ids
            attention_mask[index, : len(row.input_ids)] = 1
        return _Batch(rows, input_ids, attention_mask)

    def predict(self, batch: _Batch) -> list[list[int]]:
        if self._io_binding:
            return self._generate_bound(batch)
        return self._generate(batch)

    def encode(self, output: list[list[int]], rows: Sequence[Row]) -> list[list[int]]:
        return output

    # ----- host-memory path (CPU) ------------------------------------------------------------
    def _generate(self, batch: _Batch) -> list[list[int]]:
        rows = batch.rows
        n = len(rows)
        hidden = self.encoder.run(
            ["last_hidden_state"],
            {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask},
        )[0]
        mask = batch.attention_mask
        active = np.arange(n)  # which original row each batch position holds
        generated: list[list[int]] = [[] for _ in range(n)]
        sampler = _Sampler(rows)
        tokens = np.full((n, 1), self.ids.decoder_start, dtype=np.int64)
        past = self._empty_past(n)
        cross: dict[str, np.ndarray] = {}
        for step in range(max(row.max_new_tokens for row in rows)):
            feed = {
                "input_ids": tokens,
                "encoder_hidden_states": hidden,
                "encoder_attention_mask": mask,
                "use_cache_branch": np.array([step > 0]),
                **past,
                **cross,
            }
            outputs = self.decoder.run(None, feed)
            next_tokens = sampler.choose(outputs[0][:, -1, :], active)
            past = {}
            for name, value in zip(self._output_names[1:], outputs[1:], strict=True):
                target = self._past_for_output.get(name)
                if target is None:
                    continue
                if ".encoder." in target:
                    if step == 0:
                        cross[target] = value
                else:
                    past[target] = value
            keep = self._record(next_tokens, active, rows, generated)
            if not keep.any():
                break
            if not keep.all():
                active, hidden, mask, next_tokens = (
                    active[keep],
                    hidden[keep],
                    mask[keep],
                    next_tokens[keep],
                )
                past = {name: value[keep] for name, value in past.items()}
                cross = {name: value[keep] for name, value in cross.items()}
            tokens = next_tokens.reshape(-1, 1)
        return generated

    def _record(
        self,
        next_tokens: np.ndarray,
        active: np.ndarray,
        rows: Sequence[Row],
        generated: list[list[int]],
    ) -> np.ndarray:
        """Append each active row's token; return which rows go on."""
        keep = np.ones(len(active), dtype=bool)
        for position, index in enumerate(active.tolist()):
            row = rows[index]
            token = int(next_tokens[position])
            if token == self.ids.eos or row.cancelled.is_set():
                keep[position] = False
                continue
            generated[index].append(token)
            if len(generated[index]) >= row.max_new_tokens:
                keep[position] = False
        return keep

    def _empty_past(self, n: int) -> dict[str, np.ndarray]:
        # Step 0 takes the no-cache branch, which ignores these; they only need the right rank.
        shape = (n, self._heads, 0, self._head_dim)
        return {name: np.zeros(shape, dtype=self._cache_dtype) for name in self._past_names}

    # ----- IO-binding path (CUDA; runs on CPU too, which is how it is tested) -----------------
    def _generate_bound(self, batch: _Batch) -> list[list[int]]:
        ort = self._ort
        device = "cuda" if self.device == "cuda" else "cpu"
        device_id = self._device_id if device == "cuda" else 0

        def on_device(array: np.ndarray) -> Any:
            return ort.OrtValue.ortvalue_from_numpy(array, device, device_id)

        rows = batch.rows
        n = len(rows)
        mask = on_device(batch.attention_mask)
        binding = self.encoder.io_binding()
        binding.bind_ortvalue_input("input_ids", on_device(batch.input_ids))
        binding.bind_ortvalue_input("attention_mask", mask)
        binding.bind_output("last_hidden_state", device, device_id)
        self.encoder.run_with_iobinding(binding)
        hidden = binding.get_outputs()[0]

        all_rows = np.arange(n)
        generated: list[list[int]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        sampler = _Sampler(rows)
        tokens = np.full((n, 1), self.ids.decoder_start, dtype=np.int64)
        past = {name: on_device(value) for name, value in self._empty_past(n).items()}
        cross: dict[str, Any] = {}
        for step in range(max(row.max_new_tokens for row in rows)):
            binding = self.decoder.io_binding()
            binding.bind_cpu_input("input_ids", tokens)
            binding.bind_cpu_input("use_cache_branch", np.array([step > 0]))
            binding.bind_ortvalue_input("encoder_hidden_states", hidden)
            binding.bind_ortvalue_input("encoder_attention_mask", mask)
            for name, value in {**past, **cross}.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_output("logits", "cpu")
            for name in self._output_names[1:]:
                binding.bind_output(name, device, device_id)
            self.decoder.run_with_iobinding(binding)
            outputs = binding.get_outputs()
            next_tokens = sampler.choose(outputs[0].numpy()[:, -1, :], all_rows)
            past = {}
            for name, value in zip(self._output_names[1:], outputs[1:], strict=True):
                target = self._past_for_output.get(name)
                if target is None:
                    continue
                if ".encoder." in target:
                    if step == 0:
                        cross[target] = value
                else:
                    past[target] = value
            live = np.flatnonzero(~done)
            keep = self._record(next_tokens[live], live, rows, generated)
            done[live[~keep]] = True
            if done.all():
                break
            # Finished rows keep decoding (their tokens are discarded): feed them padding.
            next_tokens[done] = self.ids.pad
            tokens = next_tokens.reshape(-1, 1)
        return generated


class _Sampler:
    """Greedy argmax, or per-row temperature/top-k sampling with the row's own generator."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows
        self.any_sampled = any(row.sampled for row in rows)
        self.generators = [np.random.default_rng(row.seed) if row.sampled else None for row in rows]

    def choose(self, logits: np.ndarray, active: np.ndarray) -> np.ndarray:
        tokens = logits.argmax(axis=-1).astype(np.int64)
        if not self.any_sampled:
            return tokens
        for position, index in enumerate(active.tolist()):
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
