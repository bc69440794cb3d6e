"""Where the student's starting weights come from.

``--student`` accepts:

- a Hugging Face hub name (``google/t5-v1_1-base``): read from the local HF cache when it is
  there, downloaded otherwise (unless ``HF_HUB_OFFLINE=1``);
- a local directory with ``config.json`` and safetensors weights (a ``save_pretrained``
  output, an HF cache snapshot folder, or a mindmirror bundle);
- ``scratch:<size>``: a randomly initialised T5 of a named shape (:data:`SCRATCH_CONFIGS`) with
  a SentencePiece tokenizer trained on the training text, so everything runs offline.

Only T5 checkpoints are accepted (the bundle, export and service assume
``T5ForConditionalGeneration``), and only safetensors weights: the project never unpickles a
file, so a hub repository that offers only ``pytorch_model.bin`` is refused with a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.errors import MindmirrorError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

__all__ = [
    "SCRATCH_CONFIGS",
    "StudentModelError",
    "StudentSource",
    "check_student",
    "load_pretrained_tokenizer",
    "load_student_model",
    "resolve_student",
    "scratch_config",
]

SCRATCH_PREFIX = "scratch:"

#: Named shapes for from-scratch students: the t5-v1_1 architecture (gated-GELU FFN, untied
#: output layer) at smaller widths. ``small`` is t5-v1_1-small's shape.
SCRATCH_CONFIGS: dict[str, dict[str, int]] = {
    "micro": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4},
    # Sized for the offline demo's arith task on 2 CPU cores (docs/demo.md, "Sizing").
    "demo": {"d_model": 64, "d_kv": 16, "d_ff": 256, "num_layers": 3, "num_heads": 4},
    "tiny": {"d_model": 128, "d_kv": 32, "d_ff": 384, "num_layers": 3, "num_heads": 4},
    "mini": {"d_model": 256, "d_kv": 32, "d_ff": 768, "num_layers": 4, "num_heads": 8},
    "small": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8, "num_heads": 6},
}


class StudentModelError(MindmirrorError, ValueError):
    """The student checkpoint cannot be used (not found, not T5, no safetensors weights)."""


@dataclass(frozen=True)
class StudentSource:
    """A parsed ``--student`` value."""

    spec: str
    scratch: str | None = None  # the SCRATCH_CONFIGS name when training from scratch
    local_dir: Path | None = None  # set when the spec is an existing directory

    @property
    def description(self) -> str:
        if self.scratch:
            return f"{self.spec} (random init, {describe_scratch(self.scratch)})"
        return self.spec


def describe_scratch(name: str) -> str:
    shape = SCRATCH_CONFIGS[name]
    return (
        f"d_model {shape['d_model']}, {shape['num_layers']}+{shape['num_layers']} layers, "
        f"{shape['num_heads']} heads, d_ff {shape['d_ff']}"
    )


def resolve_student(spec: str) -> StudentSource:
    """Classify ``--student`` without loading anything (cheap; fails early on typos)."""
    if spec.startswith(SCRATCH_PREFIX):
        name = spec[len(SCRATCH_PREFIX) :]
        if name not in SCRATCH_CONFIGS:
            raise StudentModelError(
                f"unknown from-scratch size {name!r}; choose one of "
                + ", ".join(f"scratch:{n}" for n in SCRATCH_CONFIGS)
            )
        return StudentSource(spec=spec, scratch=name)
    path = Path(spec).expanduser()
    if path.is_dir():
        return StudentSource(spec=spec, local_dir=path)
    # Hub names are "name" or "owner/name"; anything else that does not exist is a bad path.
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path and not path.exists():
        raise StudentModelError(f"student checkpoint directory not found: {spec}")
    if path.is_file():
        raise StudentModelError(
            f"--student {spec} is a file; pass the directory that holds config.json and "
            "model.safetensors, a hub name, or scratch:<size>"
        )
    return StudentSource(spec=spec)


def scratch_config(
    name: str, tokenizer: PreTrainedTokenizerBase, dropout: float | None
) -> T5Config:
    from transformers import T5Config

    shape = SCRATCH_CONFIGS[name]
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=shape["d_model"],
        d_kv=shape["d_kv"],
        d_ff=shape["d_ff"],
        num_layers=shape["num_layers"],
        num_decoder_layers=shape["num_layers"],
        num_heads=shape["num_heads"],
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.1 if dropout is None else dropout,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _check_t5(config: Any, spec: str) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "t5":
        architectures = ", ".join(getattr(config, "architectures", None) or []) or "unknown"
        raise StudentModelError(
            f"{spec} is not a T5 checkpoint (model_type {model_type!r}, architectures "
            f"{architectures}); mindmirror students are T5ForConditionalGeneration, e.g. "
            "google/t5-v1_1-base or scratch:tiny"
        )


def _from_pretrained(loader: Any, spec: str, **kwargs: Any) -> Any:
    """Try the local files first (a cached model never touches the network), then the hub."""
    try:
        return loader.from_pretrained(spec, local_files_only=True, **kwargs)
    except OSError:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or Path(spec).expanduser().is_dir():
            raise
    return loader.from_pretrained(spec, **kwargs)


def check_student(source: StudentSource, revision: str | None = None) -> Any:
    """Read a pretrained student's config and check that it is a T5 (cheap: no weights), so
    a wrong ``--student`` fails before any data is read. Returns the config."""
    from transformers import AutoConfig

    if source.scratch:
        raise ValueError("scratch students have no checkpoint to check")
    spec = str(source.local_dir) if source.local_dir else source.spec
    if source.local_dir is not None and not (source.local_dir / "config.json").is_file():
        raise StudentModelError(
            f"{spec} holds no config.json; it is not a saved model (pass the folder written by "
            "save_pretrained, an HF cache snapshot, a mindmirror bundle, a hub name or "
            "scratch:<size>)"
        )
    try:
        config = _from_pretrained(AutoConfig, spec, revision=revision)
    except (OSError, ValueError) as error:
        raise StudentModelError(
            f"cannot load student {spec!r}: not a local directory, not in the Hugging Face cache "
            f"and not downloadable here ({str(error).splitlines()[0]})"
        ) from None
    _check_t5(config, spec)
    return config


def load_student_model(
    source: StudentSource,
    *,
    revision: str | None = None,
    dropout: float | None = None,
) -> T5ForConditionalGeneration:
    """Load a pretrained T5 (hub name, HF cache entry or local directory), checking it is T5."""
    from transformers import T5ForConditionalGeneration

    config = check_student(source, revision)
    spec = str(source.local_dir) if source.local_dir else source.spec
    if dropout is not None:
        config.dropout_rate = dropout
    try:
        return _from_pretrained(
            T5ForConditionalGeneration,
            spec,
            config=config,
            revision=revision,
            use_safetensors=True,
        )
    except (OSError, ValueError) as error:
        raise StudentModelError(
            f"cannot load safetensors weights for {spec!r} ({str(error).splitlines()[0]}). "
            "mindmirror loads only model.safetensors (it never unpickles pytorch_model.bin); "
            "for a hub repository without them try --student-revision refs/pr/<n> of its "
            "safetensors conversion, or convert the checkpoint once in a trusted environment"
        ) from None


def load_pretrained_tokenizer(
    source: StudentSource, revision: str | None = None
) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    spec = str(source.local_dir) if source.local_dir else source.spec
    try:
        return _from_pretrained(AutoTokenizer, spec, revision=revision)
    except (OSError, ValueError, TypeError) as error:
        raise StudentModelError(
            f"cannot load the tokenizer of {spec!r} ({str(error).splitlines()[0]})"
        ) from None
