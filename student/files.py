"""Small filesystem helpers shared by the writers of bundles and data files."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["readable_by_all"]


def readable_by_all(path: Path) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (0600/0700) the usual umask-based mode.

    Bundles are written by one user and served by another (the container's non-root uid), so
    they must not keep the private modes that temporary files are created with.
    """
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
