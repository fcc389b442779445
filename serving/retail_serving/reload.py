"""The hot-reload state machine: pure decisions about what a poll should do and what to log.

Given what the server is serving and what a HEAD of the model object just said, ``plan``
decides whether to load; ``after_success`` / ``after_failure`` give the next state and whether
the event is news worth a log line. The rules:

* the version being served is never loaded again; a change of location (another URI, another
  pinned version or digest) counts as a new version;
* a version that was rejected (bad bytes, checksum mismatch, failed smoke test) is not retried
  until the object changes, because the same bytes fail the same way;
* a temporary failure (S3 unreachable, access denied) is retried on every poll, but logged
  only when it first happens for that version, so a broken bucket does not flood the logs;
* every failed attempt is still counted (by the caller, in /metrics).

``verify`` is the checksum rule. The registry (``registry``) does the I/O around these.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from retail_serving.errors import ChecksumMismatch, ModelRejected, ServingError
from retail_serving.versions import ObjectVersion


class Action(Enum):
    KEEP = "keep"  # nothing new: keep serving what we have
    LOAD = "load"  # a version we have not tried (or may retry): download, verify, load, swap


@dataclass(frozen=True)
class ReloadState:
    serving: ObjectVersion | None = None
    rejected: ObjectVersion | None = None  # permanently failed; skipped until the object changes
    failing: ObjectVersion | None = None  # temporarily failed; retried, already logged
    head_failing: bool = False  # the last HEAD failed (already logged)


def _same(a: ObjectVersion | None, b: ObjectVersion) -> bool:
    return a is not None and a.identity == b.identity


def plan(state: ReloadState, observed: ObjectVersion) -> Action:
    if _same(state.serving, observed) or _same(state.rejected, observed):
        return Action.KEEP
    return Action.LOAD


def after_success(state: ReloadState, observed: ObjectVersion) -> ReloadState:
    return ReloadState(serving=observed)


def after_failure(
    state: ReloadState, observed: ObjectVersion, error: ServingError
) -> tuple[ReloadState, bool]:
    """The next state, and whether this failure is news (to be logged)."""
    if isinstance(error, ModelRejected):
        return replace(state, rejected=observed, failing=None, head_failing=False), True
    news = not _same(state.failing, observed)
    return replace(state, failing=observed, head_failing=False), news


def after_head(state: ReloadState, *, ok: bool) -> tuple[ReloadState, bool]:
    """Track HEAD failures; only the first of a run of failures (or the recovery) is news."""
    news = state.head_failing == ok
    return replace(state, head_failing=not ok), news


def verify(digest: str, observed: ObjectVersion, *, require_recorded: bool) -> None:
    """Refuse bytes whose sha256 differs from the location's pin or from the digest recorded
    at upload."""
    pinned_sha256 = observed.location.sha256 if observed.location else None
    if pinned_sha256 and digest != pinned_sha256.lower():
        raise ChecksumMismatch(f"sha256 {digest} differs from the pinned {pinned_sha256}")
    if observed.sha256 is None:
        if require_recorded:
            raise ChecksumMismatch("the object has no sha256 metadata to verify against")
        return
    if digest != observed.sha256.lower():
        raise ChecksumMismatch(f"sha256 {digest} differs from the recorded {observed.sha256}")
