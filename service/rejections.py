"""What the model and inference layers refuse to do, as plain exceptions (no HTTP here).

A request can be well-formed JSON and still ask for more than this deployment serves: an
input longer than the token limit, more new tokens or samples than the caps, more inputs than
one request may carry, or a verdict from a student that never learnt to judge. The layers that
know those limits raise a :class:`Rejected`; the HTTP layer maps each kind to its status in one
place (``mindmirror.service.error_handlers``), so the same rules serve a caller without HTTP.
"""

from __future__ import annotations

__all__ = ["LimitExceeded", "Rejected", "SelfEvaluationMissing"]


class Rejected(Exception):
    """A request the model cannot serve as asked; ``message`` says why, for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitExceeded(Rejected):
    """One field of the request is over a limit; ``detail`` names the limit and its setting."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class SelfEvaluationMissing(Rejected):
    """The student was trained without self-evaluation, so it cannot judge reasoning."""
