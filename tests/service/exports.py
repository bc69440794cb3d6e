"""Give a test bundle the export layout of docs/contracts.md without `mindmirror export`.

``onnx/fp32/`` gets optimum-onnx's encoder and merged decoder, ``ctranslate2/fp32/`` a
CTranslate2 conversion; ``manifest.exports`` records them and the manifest's checksums are
rewritten, exactly as the export stage does. Used by the service tests and the load benchmark.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

from mindmirror.student.bundle import load_manifest, write_manifest

ONNX_FILES = ("encoder_model.onnx", "decoder_model_merged.onnx")


def add_onnx_export(bundle: Path, variant: str = "fp32") -> Path:
    from optimum.exporters.onnx import main_export

    target = bundle / "onnx" / variant
    with tempfile.TemporaryDirectory(prefix="mm-onnx-") as tmp, warnings.catch_warnings():
        # The tracer's warnings are about the exporter, not us; parity is tested separately
        # (tests/service/test_backends.py), so optimum's own validation pass is skipped.
        warnings.simplefilter("ignore")
        main_export(
            model_name_or_path=str(bundle),
            output=tmp,
            task="text2text-generation-with-past",
            device="cpu",
            do_validation=False,
        )
        target.mkdir(parents=True, exist_ok=True)
        for name in ONNX_FILES:
            shutil.move(str(Path(tmp) / name), target / name)
    manifest = load_manifest(bundle, verify=False)
    exports = dict(manifest.exports)
    onnx = dict(exports.get("onnx") or {"opset": 17, "variants": {}, "recommended": {}})
    onnx["variants"] = {
        **onnx.get("variants", {}),
        variant: {
            "path": f"onnx/{variant}",
            "devices": ["cpu", "cuda"],
            "precision": variant,
            "token_agreement": 1.0,
        },
    }
    onnx["recommended"] = {"cpu": variant, "cuda": variant}
    exports["onnx"] = onnx
    write_manifest(bundle, manifest.model_copy(update={"exports": exports}))
    return bundle


def add_ctranslate2_export(bundle: Path, variant: str = "fp32") -> Path:
    import ctranslate2.converters

    target = bundle / "ctranslate2" / variant
    ctranslate2.converters.TransformersConverter(str(bundle)).convert(
        str(target), quantization=None if variant == "fp32" else variant, force=True
    )
    manifest = load_manifest(bundle, verify=False)
    exports = dict(manifest.exports)
    record = dict(exports.get("ctranslate2") or {"variants": {}})
    record["variants"] = {
        **record.get("variants", {}),
        variant: {"path": f"ctranslate2/{variant}", "devices": ["cpu", "cuda"]},
    }
    exports["ctranslate2"] = record
    write_manifest(bundle, manifest.model_copy(update={"exports": exports}))
    return bundle
