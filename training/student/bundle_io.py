"""Write a trained student into a bundle, and load one back for training-side use.

The service has its own loader (it must not import torch); this one is for evaluation, export
and continued training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mindmirror.student.bundle import Manifest, atomic_directory, load_manifest, write_manifest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

__all__ = ["load_student", "save_bundle"]


def save_bundle(
    model: T5ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    manifest: Manifest,
    target: str | Path,
    force: bool = False,
) -> Manifest:
    """Save weights (safetensors), tokenizer and manifest atomically into ``target``."""
    with atomic_directory(target, force=force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        written = write_manifest(tmp, manifest)
    return written


def load_student(
    bundle: str | Path, device: str = "cpu"
) -> tuple[T5ForConditionalGeneration, PreTrainedTokenizerBase, Manifest]:
    """Verify a bundle's checksums, then load its model (eval mode) and tokenizer offline."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    manifest = load_manifest(bundle)
    # A bundle is self-contained: never reach for the hub while loading one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = T5ForConditionalGeneration.from_pretrained(bundle, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    return model.to(device).eval(), tokenizer, manifest
