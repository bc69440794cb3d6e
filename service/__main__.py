"""``python -m mindmirror.service``: serve the bundle named by ``MINDMIRROR_BUNDLE`` (the container
entry point; every setting comes from the environment)."""

from __future__ import annotations

import sys

from mindmirror.student.errors import MindmirrorError


def main() -> int:
    from mindmirror.service.server import serve
    from mindmirror.service.settings import load_settings

    try:
        return serve(load_settings())
    except MindmirrorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
