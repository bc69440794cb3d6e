"""mindmirror: distil a teacher LLM into a self-evaluating T5 student, export it, serve it.

One import namespace for the whole distribution. The repository keeps its stages as top-level
folders (``student/``, ``training/``, ``export/``, ``service/``); ``pyproject.toml`` maps each
to ``mindmirror.<folder>`` (setuptools ``package-dir``), so an installed wheel holds only the
``mindmirror`` package and never shadows, or is shadowed by, a user's own ``service`` or
``export``. Importing this package is cheap: it imports nothing.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
