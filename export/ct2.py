"""Optional CTranslate2 conversion (``mindmirror export --ctranslate2``).

CTranslate2 keeps its own vocabulary file (``shared_vocabulary.json``, token strings); readers
map token ids through it (see :class:`mindmirror.export.runtime.Ct2Seq2Seq`).
"""

from __future__ import annotations

from pathlib import Path

from mindmirror.export.errors import ExportError

__all__ = ["CT2_VARIANTS", "convert_ctranslate2"]

#: variant name -> CTranslate2 quantization
CT2_VARIANTS = {"fp32": "float32", "int8": "int8"}


def convert_ctranslate2(model_dir: Path, target: Path, variant: str) -> None:
    """Convert the transformers model in ``model_dir`` into a CTranslate2 directory."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise ExportError(
            "--ctranslate2 needs the ctranslate2 package: pip install 'mindmirror[ctranslate2]'"
        ) from None
    if variant not in CT2_VARIANTS:
        raise ExportError(
            f"unknown CTranslate2 variant {variant!r}; choose from {', '.join(CT2_VARIANTS)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # load_as_float16=False: the converter quantizes from the fp32 weights.
    TransformersConverter(str(model_dir), load_as_float16=False).convert(
        str(target), quantization=CT2_VARIANTS[variant], force=True
    )
    if not (target / "shared_vocabulary.json").is_file():
        raise ExportError(f"CTranslate2 wrote no shared_vocabulary.json into {target}")
