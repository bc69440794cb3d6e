"""mindmirror: distil a teacher LLM into a self-evaluating T5 student, export it, serve it."""

from student import __version__

__all__ = ["__version__"]
