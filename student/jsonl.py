"""JSON Lines reading and writing with errors that say where the problem is."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_path

__all__ = ["DataFileError", "iter_jsonl", "read_json_records", "write_jsonl_atomic"]


class DataFileError(MindmirrorError, ValueError):
    """A data file is missing or malformed; the message names the file and line."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; line numbers start at 1."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFileError(
                    f"{path}:{line_number}: malformed JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DataFileError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield line_number, record


def read_json_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a file that is either JSON Lines or one JSON array of objects.

    The original SVAMP release is an array; the distilling-step-by-step splits are JSON Lines.
    For an array the "line number" is the 1-based position in it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        head = handle.read(64).lstrip()
    if head.startswith("["):
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataFileError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from None
        out = []
        for position, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise DataFileError(f"{path}: item {position} is not a JSON object")
            out.append((position, record))
        return out
    return list(iter_jsonl(path))


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records to ``path`` through a temporary file renamed into place; return the count."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
