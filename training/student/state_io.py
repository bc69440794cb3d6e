"""Save and load nested training state (optimizer, scheduler, RNG) without pickle.

The HF Trainer writes optimizer, scheduler and RNG states with ``torch.save`` and reads them
back with ``torch.load``. The project never unpickles a file, so resumable checkpoints store
the same state as two files: ``<name>.safetensors`` holds every tensor (and NumPy array), and
``<name>.json`` holds the structure with placeholders pointing at them. Containers the JSON
cannot express directly (tuples, dicts with non-string keys) are tagged so a round trip gives
back exactly what went in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mindmirror.student.files import atomic_path, atomic_write_text
from safetensors.torch import load_file, save_file

__all__ = ["load_state", "save_state", "state_exists"]

_TENSOR, _ARRAY, _TUPLE, _DICT = "__tensor__", "__ndarray__", "__tuple__", "__dict__"


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_encode(item, tensors) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and not (
            {_TENSOR, _ARRAY, _TUPLE, _DICT} & set(value)
        ):
            return {key: _encode(item, tensors) for key, item in value.items()}
        return {_DICT: [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a training state file")


def _decode(value: Any, tensors: dict[str, torch.Tensor], device: str | torch.device) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors, device) for item in value]
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]].to(device)
        if _ARRAY in value:
            return tensors[value[_ARRAY]].numpy()
        if _TUPLE in value:
            return tuple(_decode(item, tensors, device) for item in value[_TUPLE])
        if _DICT in value:
            return {
                _decode(k, tensors, device): _decode(v, tensors, device) for k, v in value[_DICT]
            }
        return {key: _decode(item, tensors, device) for key, item in value.items()}
    return value


def save_state(state: Any, directory: str | Path, name: str) -> None:
    """Write ``state`` as ``<name>.safetensors`` + ``<name>.json`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors)
    # Tensors first: the JSON is the marker that the pair is complete.
    with atomic_path(directory / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(directory / f"{name}.json", json.dumps(structure))


def state_exists(directory: str | Path, name: str) -> bool:
    directory = Path(directory)
    return (directory / f"{name}.json").is_file() and (directory / f"{name}.safetensors").is_file()


def load_state(directory: str | Path, name: str, device: str | torch.device = "cpu") -> Any:
    """Read back what :func:`save_state` wrote (tensors placed on ``device``)."""
    directory = Path(directory)
    structure = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / f"{name}.safetensors"))
    return _decode(structure, tensors, device)
