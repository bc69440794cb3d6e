"""ONNX Runtime under the decoding loop: sessions, and the host and device cache strategies.

A variant directory holds optimum's two graphs (calling convention in ``docs/contracts.md``):
``encoder_model.onnx`` (``input_ids``, ``attention_mask`` -> ``last_hidden_state``) and
``decoder_model_merged.onnx``, which holds the first-step and the cached-step decoder behind an
``If`` on ``use_cache_branch``:

1. the encoder runs once for the whole batch;
2. step 0: the decoder reads the start token with an empty cache (``use_cache_branch=False``)
   and returns, besides the logits, the self-attention cache (``present.N.decoder.*``) and the
   cross-attention keys/values of the encoder states (``present.N.encoder.*``);
3. every later step feeds one token per row plus the caches (``use_cache_branch=True``); the
   cross-attention cache from step 0 never changes (the cache branch returns placeholders for
   it), the self-attention cache grows by one.

Two strategies hold those tensors for :func:`mindmirror.engine.decoding.generate`:

- :class:`HostCache` (numpy, the CPU default): finished rows leave at once, every cached array
  is index-selected, so a batch of mixed lengths does not keep paying for rows that are done;
- :class:`DeviceCache` (IO binding, the CUDA default): encoder states and caches stay on the
  device as ``OrtValue``s and only the logits come back each step. Device memory cannot be
  index-selected without a tensor library, so finished rows ride along fed the pad token until
  the batch ends; the loop never sees them. The same code runs on the CPU device, which is how
  the test suite (without a GPU) exercises it.

Sessions are created with the options the service runs with (:func:`session_options`), by the
service and by the export's parity check alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mindmirror.engine.decoding import (
    Generation,
    Row,
    StepCache,
    StepObserver,
    first_token_logprobs,
    generate,
)
from mindmirror.engine.ids import ModelIds, read_model_ids
from mindmirror.student.bundle import BundleError, Manifest, load_manifest

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "DECODER_FILE",
    "ENCODER_FILE",
    "DeviceCache",
    "GraphRunner",
    "HostCache",
    "OnnxSeq2Seq",
    "load_sessions",
    "session_options",
]

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"

_PAST_PREFIX = "past_key_values."
_PRESENT_PREFIX = "present."
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def session_options(threads: int = 0) -> ort.SessionOptions:
    """The session options everything that decodes with ONNX Runtime uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
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
    return options


def load_sessions(
    directory: str | Path,
    device: str = "cpu",
    device_id: int = 0,
    threads: int = 0,
    expected_sha256: dict[str, str] | None = None,
    cuda_options: dict[str, str] | None = None,
) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """The encoder and merged-decoder sessions of the variant in ``directory``.

    On ``device="cuda"`` the CUDA provider comes first (with ``device_id`` and any
    ``cuda_options``) and the CPU provider takes what it cannot run. With ``expected_sha256``
    (file name -> digest) each graph is read once, hashed and handed to ONNX Runtime as bytes,
    so the bytes that run are the bytes that were checked.
    """
    import onnxruntime as ort

    directory = Path(directory)
    options = session_options(threads)
    providers: list[Any] = ["CPUExecutionProvider"]
    if device == "cuda":
        cuda = {"device_id": device_id, **(cuda_options or {})}
        providers.insert(0, ("CUDAExecutionProvider", cuda))
    sessions = []
    for name in (ENCODER_FILE, DECODER_FILE):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path} not found")
        has_external_data = any(directory.glob(f"{name}_data*"))
        if expected_sha256 is not None and not has_external_data:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != expected_sha256.get(name):
                raise BundleError(
                    f"checksum mismatch for {path}: the file was modified or corrupted "
                    "since the export; re-run `mindmirror export --force`"
                )
            sessions.append(ort.InferenceSession(data, options, providers=providers))
        else:
            # External weights are resolved relative to the model's path; their checksums
            # were verified against the manifest before this call.
            sessions.append(ort.InferenceSession(str(path), options, providers=providers))
    return sessions[0], sessions[1]


class OnnxSeq2Seq:
    """An encoder + merged-decoder pair decoded by the engine's loop."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        ids: ModelIds,
        io_binding: bool | None = None,
        device_id: int = 0,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.ids = ids
        #: where the decoder actually runs (the CUDA provider may have failed to start)
        self.device = "cuda" if decoder.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.device_id = device_id if self.device == "cuda" else 0
        #: the strategy: device memory (IO binding) by default on CUDA, host memory otherwise
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding
        self._inspect_decoder()

    @classmethod
    def load(
        cls,
        directory: str | Path,
        ids: ModelIds,
        device: str = "cpu",
        device_id: int = 0,
        threads: int = 0,
        expected_sha256: dict[str, str] | None = None,
        io_binding: bool | None = None,
        cuda_options: dict[str, str] | None = None,
    ) -> OnnxSeq2Seq:
        """Load the variant in ``directory`` (see :func:`load_sessions`)."""
        encoder, decoder = load_sessions(
            directory, device, device_id, threads, expected_sha256, cuda_options
        )
        return cls(encoder, decoder, ids, io_binding=io_binding, device_id=device_id)

    @classmethod
    def from_bundle(
        cls,
        bundle: str | Path,
        variant: str = "fp32",
        device: str = "cpu",
        threads: int = 0,
        io_binding: bool | None = None,
    ) -> OnnxSeq2Seq:
        """Load an exported variant, refusing files that do not match the manifest."""
        bundle = Path(bundle)
        # Checksums of everything under this variant's directory (external data included); the
        # two graphs are hashed again as they are read.
        manifest = load_manifest(bundle, verify=f"onnx/{variant}/")
        variants = manifest.exports.get("onnx", {}).get("variants", {})
        if variant not in variants:
            raise BundleError(
                f"bundle {bundle} has no ONNX variant {variant!r} "
                f"(exported: {', '.join(variants) or 'none'}); run `mindmirror export`"
            )
        relative = variants[variant].get("path", f"onnx/{variant}")
        return cls.load(
            bundle / relative,
            read_model_ids(bundle),
            device=device,
            threads=threads,
            expected_sha256=expected_digests(bundle, manifest, relative),
            io_binding=io_binding,
        )

    def _inspect_decoder(self) -> None:
        inputs = {item.name: item for item in self.decoder.get_inputs()}
        required = {"input_ids", "encoder_hidden_states", "encoder_attention_mask"}
        missing = (required | {"use_cache_branch"}) - inputs.keys()
        if missing:
            raise BundleError(
                f"{DECODER_FILE} is not a merged decoder with past key values (missing inputs: "
                f"{sorted(missing)}); export with task text2text-generation-with-past"
            )
        self.past_names = [name for name in inputs if name.startswith(_PAST_PREFIX)]
        if not self.past_names:
            raise BundleError(f"{DECODER_FILE} has no past_key_values inputs")
        self.output_names = [item.name for item in self.decoder.get_outputs()]
        if self.output_names[0] != "logits":
            raise BundleError(f"{DECODER_FILE}: first output is not logits")
        # present.N.decoder.key -> past_key_values.N.decoder.key
        self.past_for_output = {
            name: _PAST_PREFIX + name[len(_PRESENT_PREFIX) :]
            for name in self.output_names[1:]
            if name.startswith(_PRESENT_PREFIX)
        }
        sample = inputs[self.past_names[0]]
        cache_dtype = _ORT_TYPES.get(sample.type)
        if cache_dtype is None:
            raise BundleError(f"unsupported cache type {sample.type} in {DECODER_FILE}")
        heads, head_dim = sample.shape[1], sample.shape[3]
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise BundleError(f"{DECODER_FILE}: cache inputs have no static heads/head size")
        self.cache_dtype, self.heads, self.head_dim = cache_dtype, heads, head_dim

    def empty_past(self, n: int) -> dict[str, np.ndarray]:
        # Step 0 takes the no-cache branch, which ignores these; they only need the right rank.
        shape = (n, self.heads, 0, self.head_dim)
        return {name: np.zeros(shape, dtype=self.cache_dtype) for name in self.past_names}

    def split_present(
        self, outputs: Sequence[Any], first_step: bool, past: dict[str, Any], cross: dict[str, Any]
    ) -> None:
        """File a step's ``present.*`` outputs as the next step's ``past_key_values.*``: the
        self-attention cache each step, the cross-attention cache only from the first."""
        for name, value in zip(self.output_names[1:], outputs[1:], strict=True):
            target = self.past_for_output.get(name)
            if target is None:
                continue
            if ".encoder." not in target:
                past[target] = value
            elif first_step:
                cross[target] = value

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> StepCache:
        """Encode a padded batch into this model's cache strategy."""
        strategy = DeviceCache if self.io_binding else HostCache
        return strategy(self, input_ids, attention_mask)

    def generate(
        self, rows: Sequence[Row], observer: StepObserver | None = None
    ) -> list[Generation]:
        """Decode ``rows`` (see :func:`mindmirror.engine.decoding.generate`)."""
        return generate(rows, self.start, self.ids, observer)

    def first_token_logprobs(self, rows: Sequence[Row], tokens: Sequence[int]) -> np.ndarray:
        """See :func:`mindmirror.engine.decoding.first_token_logprobs`."""
        return first_token_logprobs(rows, self.start, self.ids, tokens)


def expected_digests(bundle: Path, manifest: Manifest, relative: str) -> dict[str, str]:
    """The manifest's sha256 of the two graphs of the variant at ``bundle/relative``."""
    expected = {}
    for name in (ENCODER_FILE, DECODER_FILE):
        digest = manifest.files.get(f"{relative}/{name}")
        if digest is None:
            raise BundleError(f"bundle {bundle}: {relative}/{name} is not in the manifest")
        expected[name] = digest
    return expected


class HostCache:
    """Tensors in host memory (numpy): finished rows leave, every cached array follows."""

    def __init__(self, model: OnnxSeq2Seq, input_ids: np.ndarray, attention_mask: np.ndarray):
        self.model = model
        self.mask = attention_mask
        self.hidden = model.encoder.run(
            ["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )[0]
        self.past: dict[str, np.ndarray] = model.empty_past(len(input_ids))
        self.cross: dict[str, np.ndarray] = {}
        self.first = True

    def step(self, tokens: np.ndarray) -> np.ndarray:
        first, self.first = self.first, False
        feed = {
            "input_ids": tokens,
            "encoder_hidden_states": self.hidden,
            "encoder_attention_mask": self.mask,
            "use_cache_branch": np.array([not first]),
            **self.past,
            **self.cross,
        }
        outputs = self.model.decoder.run(None, feed)
        self.past = {}
        self.model.split_present(outputs, first, self.past, self.cross)
        return outputs[0][:, -1, :]

    def keep(self, keep: np.ndarray) -> None:
        self.hidden, self.mask = self.hidden[keep], self.mask[keep]
        self.past = {name: value[keep] for name, value in self.past.items()}
        self.cross = {name: value[keep] for name, value in self.cross.items()}


class DeviceCache:
    """Tensors on the decoder's device (IO binding): only the logits come back each step."""

    def __init__(self, model: OnnxSeq2Seq, input_ids: np.ndarray, attention_mask: np.ndarray):
        import onnxruntime as ort

        self.model = model
        device, device_id = model.device, model.device_id

        def on_device(array: np.ndarray) -> Any:
            return ort.OrtValue.ortvalue_from_numpy(array, device, device_id)

        self.mask = on_device(attention_mask)
        binding = model.encoder.io_binding()
        binding.bind_ortvalue_input("input_ids", on_device(input_ids))
        binding.bind_ortvalue_input("attention_mask", self.mask)
        binding.bind_output("last_hidden_state", device, device_id)
        model.encoder.run_with_iobinding(binding)
        self.hidden = binding.get_outputs()[0]
        n = len(input_ids)
        self.past: dict[str, Any] = {k: on_device(v) for k, v in model.empty_past(n).items()}
        self.cross: dict[str, Any] = {}
        #: the batch positions of the live rows; the others are fed padding
        self.live = np.arange(n)
        self.size = n
        self.first = True

    def step(self, tokens: np.ndarray) -> np.ndarray:
        model = self.model
        first, self.first = self.first, False
        batch_tokens = np.full((self.size, 1), model.ids.pad, dtype=np.int64)
        batch_tokens[self.live] = tokens
        binding = model.decoder.io_binding()
        binding.bind_cpu_input("input_ids", batch_tokens)
        binding.bind_cpu_input("use_cache_branch", np.array([not first]))  # read on the host
        binding.bind_ortvalue_input("encoder_hidden_states", self.hidden)
        binding.bind_ortvalue_input("encoder_attention_mask", self.mask)
        for name, value in {**self.past, **self.cross}.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in model.output_names[1:]:
            binding.bind_output(name, model.device, model.device_id)
        model.decoder.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self.past = {}
        model.split_present(outputs, first, self.past, self.cross)
        return outputs[0].numpy()[self.live, -1, :]

    def keep(self, keep: np.ndarray) -> None:
        self.live = self.live[keep]


class GraphRunner:
    """One ONNX graph run as written, on the CPU: every output by name.

    For measurements of intermediate tensors (the export's fp16 headroom check exposes them as
    extra outputs): graph optimizations are off, since they would fuse away their producers.
    """

    def __init__(self, model: bytes, threads: int = 0) -> None:
        import onnxruntime as ort

        options = session_options(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.outputs = [output.name for output in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, feeds), strict=True))
