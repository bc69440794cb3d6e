"""Greedy decoding with an exported variant: ONNX Runtime (encoder + merged decoder) and
CTranslate2. Used by the parity check and the benchmarks.

The ONNX calling convention (also in ``docs/contracts.md``, for the service's own loop):

1. ``encoder_model.onnx``: ``input_ids``, ``attention_mask`` (int64, batch x source length) ->
   ``last_hidden_state`` (float32).
2. ``decoder_model_merged.onnx``, first step: ``input_ids`` = the decoder start token (batch x 1),
   ``encoder_hidden_states``, ``encoder_attention_mask``, every ``past_key_values.{i}.{decoder,
   encoder}.{key,value}`` as an empty float32 tensor (batch x heads x 0 x d_kv) and
   ``use_cache_branch`` = ``[False]``. Outputs: ``logits`` and ``present.*`` (same names with
   ``present`` for ``past_key_values``).
3. Next steps: ``input_ids`` = the last chosen token (batch x 1), ``use_cache_branch`` =
   ``[True]``, ``past_key_values.{i}.decoder.*`` = the previous step's ``present.{i}.decoder.*``
   and ``past_key_values.{i}.encoder.*`` = the *first* step's ``present.{i}.encoder.*`` (the
   cache branch does not recompute the cross-attention cache).

Every variant, fp16-mixed included, takes and returns float32 tensors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.bundle import BundleError, Manifest, load_manifest
from mindmirror.student.errors import MindmirrorError

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

__all__ = [
    "Ct2Seq2Seq",
    "OnnxSeq2Seq",
    "SpecialTokens",
    "StepCallback",
    "cut_after_eos",
    "read_special_tokens",
]

#: called after every decoding step with (step, logits of that step: batch x vocab, float32)
StepCallback = Callable[[int, "np.ndarray"], None]


@dataclass(frozen=True)
class SpecialTokens:
    decoder_start: int
    eos: int
    pad: int

    def greedy_config(self, max_new_tokens: int, exact: bool = False) -> Any:
        """A transformers ``GenerationConfig`` for plain greedy decoding with these ids.

        ``exact`` forces exactly ``max_new_tokens`` (benchmarks: random-init models would stop
        at different lengths in each runtime otherwise).
        """
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens if exact else 0,
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=self.decoder_start,
            eos_token_id=self.eos,
            pad_token_id=self.pad,
        )


def read_special_tokens(bundle: str | Path) -> SpecialTokens:
    """Decoder start, end and pad token ids from the bundle's ``config.json``."""
    path = Path(bundle) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read {path}: {error}") from None
    pad = config.get("pad_token_id", 0)
    eos = config.get("eos_token_id", 1)
    if isinstance(eos, list):  # generation configs may list several; T5 has one
        eos = eos[0]
    start = config.get("decoder_start_token_id")
    return SpecialTokens(decoder_start=pad if start is None else start, eos=eos, pad=pad)


def cut_after_eos(tokens: list[int], eos: int) -> list[int]:
    """Cut a generated row after its first end token (kept, as transformers does)."""
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


class OnnxSeq2Seq:
    """An encoder + merged-decoder pair with a greedy decoding loop (numpy or IO binding)."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        special: SpecialTokens,
        io_binding: bool = False,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.special = special
        self.io_binding = io_binding
        names = [i.name for i in decoder.get_inputs()]
        for required in ("input_ids", "encoder_hidden_states", "use_cache_branch"):
            if required not in names:
                raise MindmirrorError(
                    f"the decoder is not an optimum merged decoder: it has no {required!r} input"
                )
        self._past = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self._outputs = [o.name for o in decoder.get_outputs()]
        # Where IO binding keeps the tensors: the device the decoder actually runs on.
        self.device = "cuda" if decoder.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    # ----- loading ----------------------------------------------------------------------------
    @classmethod
    def from_directory(
        cls,
        directory: str | Path,
        special: SpecialTokens,
        providers: Sequence[Any] | None = None,
        io_binding: bool = False,
        threads: int | None = None,
        expected_sha256: dict[str, str] | None = None,
    ) -> OnnxSeq2Seq:
        """Load ``encoder_model.onnx`` and ``decoder_model_merged.onnx`` from ``directory``.

        ``providers`` as ONNX Runtime takes them (names, or ``(name, options)`` pairs).

        With ``expected_sha256`` (file name -> digest) each graph is read once, hashed and
        handed to ONNX Runtime as bytes, so the bytes that run are the bytes that were checked.
        """
        import onnxruntime as ort

        directory = Path(directory)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = list(providers or ["CPUExecutionProvider"])
        sessions = []
        for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
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
                # were verified by load_manifest before this call.
                sessions.append(ort.InferenceSession(str(path), options, providers=providers))
        return cls(sessions[0], sessions[1], special, io_binding=io_binding)

    @classmethod
    def from_bundle(
        cls,
        bundle: str | Path,
        variant: str = "fp32",
        providers: Sequence[Any] | None = None,
        io_binding: bool = False,
        threads: int | None = None,
        manifest: Manifest | None = None,
    ) -> OnnxSeq2Seq:
        """Load an exported variant, refusing files that do not match the manifest."""
        bundle = Path(bundle)
        if manifest is None:
            # Checksums of everything under this variant's directory (external data included);
            # the two graphs are hashed again as they are read, below.
            manifest = load_manifest(bundle, verify=f"onnx/{variant}/")
        variants = manifest.exports.get("onnx", {}).get("variants", {})
        if variant not in variants:
            raise BundleError(
                f"bundle {bundle} has no ONNX variant {variant!r} "
                f"(exported: {', '.join(variants) or 'none'}); run `mindmirror export`"
            )
        relative = variants[variant].get("path", f"onnx/{variant}")
        expected = {}
        for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
            digest = manifest.files.get(f"{relative}/{name}")
            if digest is None:
                raise BundleError(f"bundle {bundle}: {relative}/{name} is not in the manifest")
            expected[name] = digest
        return cls.from_directory(
            bundle / relative,
            read_special_tokens(bundle),
            providers=providers,
            io_binding=io_binding,
            threads=threads,
            expected_sha256=expected,
        )

    # ----- decoding ---------------------------------------------------------------------------
    def generate(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_step: StepCallback | None = None,
    ) -> list[list[int]]:
        """Greedy decoding. Each row ends after its end token (included) or at the limit.

        ``min_new_tokens`` suppresses the end token for that many steps (as transformers'
        ``min_new_tokens``); the benchmarks use it to force a fixed number of steps.
        """
        if self.io_binding:
            return self._generate_io_binding(
                input_ids, attention_mask, max_new_tokens, min_new_tokens, on_step
            )
        import numpy as np

        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        batch = input_ids.shape[0]
        hidden = self.encoder.run(
            ["last_hidden_state"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )[0]
        feeds: dict[str, Any] = {
            "encoder_attention_mask": attention_mask,
            "encoder_hidden_states": hidden,
            "input_ids": np.full((batch, 1), self.special.decoder_start, dtype=np.int64),
            "use_cache_branch": np.array([False]),
        }
        for past in self._past:
            feeds[past.name] = np.zeros((batch, past.shape[1], 0, past.shape[3]), np.float32)
        tokens = np.zeros((batch, 0), dtype=np.int64)
        done = np.zeros(batch, dtype=bool)
        for step in range(max_new_tokens):
            outputs = dict(zip(self._outputs, self.decoder.run(None, feeds), strict=True))
            logits = outputs["logits"][:, -1, :]
            if on_step is not None:
                on_step(step, logits)
            chosen = self._choose(logits, step, min_new_tokens, done)
            tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
            done |= chosen == self.special.eos
            if done.all():
                break
            for name, value in outputs.items():
                if not name.startswith("present."):
                    continue
                past_name = "past_key_values." + name[len("present.") :]
                # The cache branch returns placeholders for the cross-attention cache: keep
                # the first step's.
                if step == 0 or ".decoder." in name:
                    feeds[past_name] = value
            feeds["input_ids"] = chosen[:, None]
            feeds["use_cache_branch"] = np.array([True])
        return [cut_after_eos(row.tolist(), self.special.eos) for row in tokens]

    def _choose(
        self, logits: np.ndarray, step: int, min_new_tokens: int, done: np.ndarray
    ) -> np.ndarray:
        import numpy as np

        if step < min_new_tokens:
            logits = logits.copy()
            logits[:, self.special.eos] = -np.inf
        chosen = logits.argmax(axis=-1).astype(np.int64)
        # Finished rows keep producing pad, as transformers' generate does.
        return np.where(done, self.special.pad, chosen)

    def _generate_io_binding(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        max_new_tokens: int,
        min_new_tokens: int,
        on_step: StepCallback | None,
    ) -> list[list[int]]:
        """The same loop with tensors kept on the device between steps (ORT IO binding).

        Only the logits of the last position come back to the host each step (to choose the
        next token); the encoder output and the key/value caches never leave the device.
        """
        import numpy as np
        import onnxruntime as ort

        device = self.device
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        batch = input_ids.shape[0]
        mask_value = ort.OrtValue.ortvalue_from_numpy(attention_mask, device, 0)
        binding = self.encoder.io_binding()
        binding.bind_ortvalue_input(
            "input_ids", ort.OrtValue.ortvalue_from_numpy(input_ids, device, 0)
        )
        binding.bind_ortvalue_input("attention_mask", mask_value)
        binding.bind_output("last_hidden_state", device)
        self.encoder.run_with_iobinding(binding)
        hidden = binding.get_outputs()[0]

        past: dict[str, Any] = {
            p.name: ort.OrtValue.ortvalue_from_numpy(
                np.zeros((batch, p.shape[1], 0, p.shape[3]), np.float32), device, 0
            )
            for p in self._past
        }
        next_ids = np.full((batch, 1), self.special.decoder_start, dtype=np.int64)
        tokens = np.zeros((batch, 0), dtype=np.int64)
        done = np.zeros(batch, dtype=bool)
        for step in range(max_new_tokens):
            binding = self.decoder.io_binding()
            binding.bind_ortvalue_input("encoder_attention_mask", mask_value)
            binding.bind_ortvalue_input("encoder_hidden_states", hidden)
            binding.bind_ortvalue_input(
                "input_ids", ort.OrtValue.ortvalue_from_numpy(next_ids, device, 0)
            )
            # The If condition is read on the host.
            binding.bind_cpu_input("use_cache_branch", np.array([step > 0]))
            for name, value in past.items():
                binding.bind_ortvalue_input(name, value)
            for name in self._outputs:
                binding.bind_output(name, "cpu" if name == "logits" else device)
            self.decoder.run_with_iobinding(binding)
            outputs = dict(zip(self._outputs, binding.get_outputs(), strict=True))
            logits = outputs["logits"].numpy()[:, -1, :]
            if on_step is not None:
                on_step(step, logits)
            chosen = self._choose(logits, step, min_new_tokens, done)
            tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
            done |= chosen == self.special.eos
            if done.all():
                break
            for name, value in outputs.items():
                if name.startswith("present.") and (step == 0 or ".decoder." in name):
                    past["past_key_values." + name[len("present.") :]] = value
            next_ids = chosen[:, None]
        return [cut_after_eos(row.tolist(), self.special.eos) for row in tokens]


class Ct2Seq2Seq:
    """A CTranslate2 model directory, fed token ids through its own vocabulary file.

    CTranslate2 reads and writes token *strings*; its vocabulary (``shared_vocabulary.json``)
    may order or pad the tokens differently from the model's embedding matrix, so ids are
    mapped through strings both ways, and returned logits are permuted into model-id order.
    """

    def __init__(
        self,
        directory: str | Path,
        tokenizer: Any,
        special: SpecialTokens,
        device: str = "cpu",
        compute_type: str = "default",
        threads: int = 0,
    ) -> None:
        import ctranslate2
        import numpy as np

        directory = Path(directory)
        vocabulary_file = directory / "shared_vocabulary.json"
        if not vocabulary_file.is_file():
            raise BundleError(f"{directory} has no shared_vocabulary.json")
        vocabulary = json.loads(vocabulary_file.read_text(encoding="utf-8"))
        self.tokenizer = tokenizer
        self.special = special
        self.translator = ctranslate2.Translator(
            str(directory), device=device, compute_type=compute_type, intra_threads=threads
        )
        model_vocab = tokenizer.get_vocab()
        # ct2 index -> model id (-1: a padding entry the tokenizer does not know)
        self._to_model = np.array([model_vocab.get(tok, -1) for tok in vocabulary])
        known = set(vocabulary)
        missing = [tok for tok in model_vocab if tok not in known]
        if missing:
            raise BundleError(
                f"{vocabulary_file} lacks {len(missing)} tokenizer tokens (e.g. {missing[0]!r}); "
                "the CTranslate2 model was converted from another tokenizer"
            )

    def generate(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        vocab_size: int | None = None,
        on_row_logits: Callable[[int, np.ndarray], None] | None = None,
    ) -> list[list[int]]:
        """Greedy decoding; ``on_row_logits(row, steps x vocab)`` gets the logits per row, in
        model-id order (entries CTranslate2 masked, e.g. the end token before
        ``min_new_tokens``, are ``-inf``)."""
        import numpy as np

        source = [
            self.tokenizer.convert_ids_to_tokens(
                [int(t) for t, m in zip(row, mask, strict=True) if m]
            )
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
            ids = self.tokenizer.convert_tokens_to_ids(result.hypotheses[0])
            rows.append(cut_after_eos([int(i) for i in ids], self.special.eos))
            if on_row_logits is not None:
                steps = np.stack([np.asarray(s, dtype=np.float32) for s in result.logits[0]])
                width = vocab_size or int(self._to_model.max()) + 1
                logits = np.full((steps.shape[0], width), -np.inf, dtype=np.float32)
                known = self._to_model >= 0
                logits[:, self._to_model[known]] = steps[:, known]
                logits[logits < -1e30] = -np.inf
                on_row_logits(index, logits)
        return rows
