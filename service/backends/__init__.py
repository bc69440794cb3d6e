"""Choosing and creating the inference backend.

:func:`resolve` turns the settings and the bundle's manifest into a :class:`BackendSpec`
(runtime, device, variant, folder), checking everything that can be checked without loading a
model: the runtime is installed, the export exists and supports the device, its files are
listed in the manifest and match their checksums. :func:`create` instantiates it. Runtimes are
imported lazily, so the serving image needs only the one it uses.

``auto`` order: the ONNX variant the manifest recommends for the device (``mindmirror export``
records the fastest variant that passed its parity check), then a CTranslate2 export, then
PyTorch on the safetensors weights when torch is installed.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from mindmirror.engine.decoding import Row
from mindmirror.engine.ids import ModelIds
from mindmirror.engine.onnx import DECODER_FILE, ENCODER_FILE
from mindmirror.service.backends.base import Backend, BackendError, BackendSpec
from mindmirror.service.text import TextCodec
from mindmirror.student.bundle import BundleError, Manifest, verify_checksums

__all__ = ["Backend", "BackendError", "BackendSpec", "Row", "create", "resolve", "verify_files"]

logger = logging.getLogger("mindmirror.service")

_ONNX_FILES = (ENCODER_FILE, DECODER_FILE)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _onnx_cuda_available() -> bool:
    if not _installed("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _torch_cuda_available() -> bool:
    if not _installed("torch"):
        return False
    from mindmirror.service.backends.pytorch import prefer_passive_openmp

    prefer_passive_openmp()
    import torch

    return bool(torch.cuda.is_available())


def _ct2_cuda_available() -> bool:
    if not _installed("ctranslate2"):
        return False
    import ctranslate2

    return ctranslate2.get_cuda_device_count() > 0


_CUDA_PROBES = {
    "onnx": _onnx_cuda_available,
    "pytorch": _torch_cuda_available,
    "ctranslate2": _ct2_cuda_available,
}
_MODULES = {"onnx": "onnxruntime", "pytorch": "torch", "ctranslate2": "ctranslate2"}


def _variants(manifest: Manifest, runtime: str) -> dict[str, dict[str, Any]]:
    record = manifest.exports.get(runtime) or {}
    variants = record.get("variants") or {}
    return {str(name): dict(value) for name, value in variants.items() if isinstance(value, dict)}


def _device_for(runtime: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda" if _CUDA_PROBES[runtime]() else "cpu"


def _pick_variant(
    manifest: Manifest, runtime: str, requested: str, device: str
) -> tuple[str, dict[str, Any]]:
    variants = _variants(manifest, runtime)
    if requested != "auto":
        if requested not in variants:
            raise BackendError(
                f"MINDMIRROR_VARIANT={requested}: the bundle's {runtime} export has "
                f"{sorted(variants) or 'no variants'}"
            )
        chosen = requested
    else:
        recommended = (manifest.exports.get(runtime) or {}).get("recommended") or {}
        chosen = recommended.get(device)
        if chosen not in variants:
            # No recommendation for this device: the full-precision variant is the safe choice.
            usable = [n for n, v in variants.items() if device in v.get("devices", [device])]
            if not usable:
                raise BackendError(
                    f"no {runtime} variant of the bundle runs on {device} "
                    f"(variants: {sorted(variants)})"
                )
            chosen = "fp32" if "fp32" in usable else usable[0]
    record = variants[chosen]
    devices = record.get("devices")
    if devices is not None and device not in devices:
        raise BackendError(
            f"{runtime} variant {chosen} runs on {', '.join(devices)}, not {device}; set "
            "MINDMIRROR_DEVICE or MINDMIRROR_VARIANT accordingly"
        )
    return chosen, record


def _variant_path(bundle: Path, record: dict[str, Any], runtime: str, name: str) -> Path:
    relative = record.get("path") or f"{'onnx' if runtime == 'onnx' else runtime}/{name}"
    path = (bundle / str(relative)).resolve()
    if not path.is_relative_to(bundle):
        raise BundleError(f"manifest export path {relative!r} points outside the bundle")
    return path


def verify_files(bundle: Path, manifest: Manifest, relatives: list[str], what: str) -> None:
    """Every file we load must be listed in the manifest and match its sha256."""
    for relative in relatives:
        if relative not in manifest.files:
            raise BundleError(
                f"bundle {bundle}: {relative} ({what}) is not listed in the manifest, so its "
                "checksum cannot be verified; re-run the export that wrote it"
            )
        verify_checksums(bundle, manifest, only=relative)


def _verify_folder(
    bundle: Path, manifest: Manifest, folder: Path, required: tuple[str, ...]
) -> None:
    prefix = folder.relative_to(bundle).as_posix() + "/"
    for name in required:
        if not (folder / name).is_file():
            raise BundleError(f"bundle {bundle}: {prefix}{name} is missing")
    listed = [relative for relative in manifest.files if relative.startswith(prefix)]
    present = [
        p.relative_to(bundle).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    ]
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise BundleError(
            f"bundle {bundle}: {', '.join(unlisted)} not listed in the manifest (checksums "
            "cannot be verified); re-run the export"
        )
    verify_checksums(bundle, manifest, only=prefix)


def resolve(
    bundle: Path,
    manifest: Manifest,
    ids: ModelIds,
    backend: str = "auto",
    device: str = "auto",
    variant: str = "auto",
    num_threads: int = 0,
    options: dict[str, Any] | None = None,
) -> BackendSpec:
    """Pick the runtime, device and variant, and verify the files it will load."""
    options = options or {}
    bundle = bundle.resolve()
    if backend == "auto":
        backend = _auto_backend(manifest, bundle)
        logger.info("backend auto -> %s", backend)
    if not _installed(_MODULES[backend]):
        raise BackendError(
            f"MINDMIRROR_BACKEND={backend} needs the {_MODULES[backend]} package, which is not "
            "installed"
        )
    chosen_device = _device_for(backend, device)
    if backend == "pytorch":
        if variant != "auto":
            raise BackendError("MINDMIRROR_VARIANT applies to ONNX and CTranslate2 exports only")
        weights = ["config.json", "model.safetensors"]
        if not (bundle / "model.safetensors").is_file():
            raise BundleError(f"bundle {bundle} has no model.safetensors for the PyTorch backend")
        verify_files(bundle, manifest, weights, "PyTorch weights")
        _require_cuda(backend, chosen_device)
        return BackendSpec(
            "pytorch", chosen_device, None, bundle, bundle, manifest, ids, num_threads, options
        )
    runtime_key = "onnx" if backend == "onnx" else "ctranslate2"
    if not _variants(manifest, runtime_key):
        raise BackendError(
            f"the bundle has no {runtime_key} export (manifest.exports.{runtime_key}); run "
            f"`mindmirror export {bundle}`"
            + (" --ctranslate2" if runtime_key == "ctranslate2" else "")
            + " or set MINDMIRROR_BACKEND=pytorch"
        )
    name, record = _pick_variant(manifest, runtime_key, variant, chosen_device)
    _require_cuda(backend, chosen_device)
    path = _variant_path(bundle, record, runtime_key, name)
    if not path.is_dir():
        raise BundleError(f"bundle {bundle}: export folder {path} is missing")
    required = _ONNX_FILES if backend == "onnx" else ("model.bin",)
    _verify_folder(bundle, manifest, path, required)
    return BackendSpec(
        backend, chosen_device, name, bundle, path, manifest, ids, num_threads, options
    )


def _require_cuda(backend: str, device: str) -> None:
    if device == "cuda" and not _CUDA_PROBES[backend]():
        hint = {
            "onnx": "install onnxruntime-gpu (instead of onnxruntime) and expose a GPU",
            "pytorch": "install a CUDA build of torch and expose a GPU",
            "ctranslate2": "install a CUDA build of ctranslate2 and expose a GPU",
        }[backend]
        raise BackendError(
            f"MINDMIRROR_DEVICE=cuda, but {_MODULES[backend]} cannot use CUDA here: {hint}, "
            "or set MINDMIRROR_DEVICE=cpu"
        )


def _auto_backend(manifest: Manifest, bundle: Path) -> str:
    if _variants(manifest, "onnx") and _installed("onnxruntime"):
        return "onnx"
    if _variants(manifest, "ctranslate2") and _installed("ctranslate2"):
        return "ctranslate2"
    if _installed("torch") and _installed("transformers"):
        return "pytorch"
    have = []
    if _variants(manifest, "onnx"):
        have.append("an ONNX export (but onnxruntime is not installed)")
    if _variants(manifest, "ctranslate2"):
        have.append("a CTranslate2 export (but ctranslate2 is not installed)")
    found = "; the bundle has " + " and ".join(have) if have else "; the bundle has no export"
    raise BackendError(
        f"no backend can serve {bundle}{found}, and torch/transformers are not installed. "
        f"Run `mindmirror export {bundle}` and install onnxruntime (pip install "
        "'mindmirror[serve,cpu]'), or install the PyTorch backend (pip install 'mindmirror[train]')"
    )


def create(spec: BackendSpec, codec: TextCodec) -> Backend[Any, Any]:
    """Instantiate (not yet set up) the backend ``spec`` names."""
    if spec.name == "onnx":
        from mindmirror.service.backends.onnx import OnnxBackend

        return OnnxBackend(spec, codec)
    if spec.name == "pytorch":
        from mindmirror.service.backends.pytorch import PyTorchBackend

        return PyTorchBackend(spec, codec)
    if spec.name == "ctranslate2":
        from mindmirror.service.backends.ctranslate2 import CTranslate2Backend

        return CTranslate2Backend(spec, codec)
    raise BackendError(f"unknown backend {spec.name!r}")
