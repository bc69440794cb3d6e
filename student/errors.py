"""The one error base every stage raises for problems the user can fix.

The CLI prints these as a one-line ``error: ...`` (exit status 2) instead of a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MindmirrorError"]


class MindmirrorError(Exception):
    """A problem with the user's input, data, files or settings, described in the message."""
