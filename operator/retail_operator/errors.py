"""The operator's error vocabulary, by meaning rather than by origin, and what each means for
the next look.

Adapters (``aws``, ``kube``) translate library exceptions into these. ``retry_after`` is the
one place that says how soon a failure is worth trying again: a *temporary* error soon
(throttling, timeouts, a restarting API server); a *permanent* one not before something outside
changes (a missing image, denied access, a name someone else holds), so it becomes a condition
and waits for the resync. ``NotLeader`` is neither: this replica stopped leading, and writes
nothing more until it leads again.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises on purpose. Its ``reason`` (a condition's
    reason, an Event's) is the class's name unless the class says otherwise."""

    reason: str = "Error"

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "reason" not in cls.__dict__:
            cls.reason = cls.__name__

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

    reason = "Error"


class ImageNotFound(PermanentError):
    """No such tag, digest or repository in ECR."""


class AccessDenied(PermanentError):
    """AWS or Kubernetes refused the operator's identity."""


class ModelNotFound(PermanentError):
    """No model object (or object version) at the spec's S3 location."""


class SpecInvalid(PermanentError):
    """The spec was admitted by the API server but cannot be carried out as written (a field
    the schema cannot check, or a child the API server refuses); the message names the field."""


class NameConflict(PermanentError):
    """A child's name is taken by an object this RetailModel does not own: it is left alone."""


class PolicyViolation(PermanentError):
    """The spec breaks a rule of a RetailModelPolicy that applies to its namespace."""


class NotLeader(OperatorError):
    """This replica no longer holds the Lease (or will not by the time a write could land)."""


def retry_after(error: Exception, resync: float) -> float:
    """How soon to look again after ``error``: never later than the resync."""
    if isinstance(error, TemporaryError):
        return min(error.retry_after, resync)
    if isinstance(error, OperatorError):
        return resync
    return min(resync, 30.0)  # a bug: try again, but do not spin
