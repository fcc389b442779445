"""The operator's error vocabulary, by meaning rather than by origin.

Adapters (``aws``, ``kube``) translate library exceptions into these; the handlers map them to
kopf's retry behaviour in one place. A *temporary* error is worth retrying soon (throttling,
timeouts, a restarting API server); a *permanent* one will not change until something outside
changes (a missing image, denied access), so it becomes a condition and waits for the resync.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""

    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class TemporaryError(OperatorError):
    """Retry soon: the same request may well succeed in a few seconds."""

    reason = "Unavailable"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float = 10.0
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class PermanentError(OperatorError):
    """Do not retry until something outside changes; report it as a condition."""


class ImageNotFound(PermanentError):
    reason = "ImageNotFound"


class AccessDenied(PermanentError):
    reason = "AccessDenied"


class ModelNotFound(PermanentError):
    reason = "ModelNotFound"
