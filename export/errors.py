"""Errors the export stage raises for problems the user can fix (printed as ``error: ...``)."""

from __future__ import annotations

from mindmirror.student.errors import MindmirrorError

__all__ = ["ExportError", "ParityError"]


class ExportError(MindmirrorError, RuntimeError):
    """The bundle cannot be exported as asked (not T5, export in the way, bad option...)."""


class ParityError(ExportError):
    """An exported variant does not answer like the PyTorch model within the set limits.

    The bundle is left unchanged; the message names the variant and the failed check, and the
    full parity report is written beside the bundle's manifest for inspection.
    """
