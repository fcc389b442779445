"""May this image roll out? A pure function of a scan report, the RetailModel's scan policy
and the time.

No I/O here: the ECR adapter produces a ``ScanReport`` and this module turns it, with the
spec's ``scanPolicy``, into an ``ImageDecision`` that carries the condition to report. Time is
an argument because exceptions end: an exception covers its finding only while ``now`` is
before its ``expires``, and the decision says when to look again so that the end is noticed
without a spec change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.spec import ScanException, ScanPolicy, Severity

# Most severe first. UNTRIAGED (enhanced scanning, not yet rated) ranks with UNDEFINED: it does
# not block on its own, because blocking on an unrated finding would block every fresh image.
_RANK = {
    Severity.CRITICAL: 5,
    Severity.HIGH: 4,
    Severity.MEDIUM: 3,
    Severity.LOW: 2,
    Severity.INFORMATIONAL: 1,
    Severity.UNDEFINED: 0,
}
_SEVERITY_ORDER = [s.value for s in _RANK]
_MAX_NAMED_FINDINGS = 5


def severity_rank(severity: str) -> int:
    try:
        return _RANK[Severity(severity.upper())]
    except (ValueError, KeyError):
        return 0


@dataclass(frozen=True)
class ImageDecision:
    """The verdict on one image: may it roll out, and the ImageScanPassed condition to show."""

    passed: bool
    reason: str
    message: str
    pending: bool = False  # worth looking again soon (scan in progress)
    counts: dict[str, int] = field(default_factory=dict)
    # Exceptions that no longer apply to a finding this image has (for a Warning Event).
    expired: tuple[ScanException, ...] = ()
    # Seconds until the first exception now covering a finding ends: decide again then.
    recheck_after: float | None = None


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment.utcoffset() is not None else str(moment)


@dataclass(frozen=True)
class _Allowances:
    """Which findings the policy lets through at ``now``, and which exceptions have ended."""

    ignored: frozenset[str]
    covering: dict[str, ScanException]  # finding id → the active exception that covers it
    ended: dict[str, ScanException]  # finding id → an exception for it that has expired

    @classmethod
    def at(cls, policy: ScanPolicy, now: datetime) -> _Allowances:
        covering = {e.id: e for e in policy.exceptions if e.active(now)}
        ended = {e.id: e for e in policy.exceptions if not e.active(now) and e.id not in covering}
        return cls(frozenset(policy.ignore_cves), covering, ended)

    def allows(self, finding: Finding) -> bool:
        return finding.name in self.ignored or finding.name in self.covering


def ending_soon(policy: ScanPolicy, now: datetime, within: timedelta) -> int:
    """How many exceptions still apply but end within ``within`` (time to renew or fix)."""
    return sum(1 for e in policy.exceptions if e.active(now) and e.expires - now <= within)


def expired_note(expired: tuple[ScanException, ...]) -> str:
    """How a message names the exceptions that ended (what to renew, or what to fix)."""
    return "; ".join(
        f"the exception for {e.id} expired at {_when(e.expires)} (reason was: {e.reason})"
        for e in expired
    )


def _format_counts(counts: Counter[str]) -> str:
    ordered = sorted(counts, key=lambda s: (-severity_rank(s), s))
    return ", ".join(f"{severity}: {counts[severity]}" for severity in ordered)


def evaluate_scan(report: ScanReport, policy: ScanPolicy, now: datetime) -> ImageDecision:
    """Apply ``policy`` to ``report`` at the time ``now`` (timezone-aware)."""
    if report.state is not ScanState.COMPLETE:
        return _without_findings(report, policy)

    allowances = _Allowances.at(policy, now)
    relevant = [f for f in report.findings if not allowances.allows(f)]
    present = {f.name for f in report.findings}
    covering = [e for name, e in allowances.covering.items() if name in present]
    expired = tuple(e for name, e in sorted(allowances.ended.items()) if name in present)
    recheck_after = (
        max(0.0, min((e.expires - now).total_seconds() for e in covering)) if covering else None
    )
    counts = Counter(f.severity.upper() for f in relevant)
    count_dict = {s: counts[s] for s in _SEVERITY_ORDER if counts[s]}

    if policy.block_severity is Severity.NONE:
        threshold = None
    else:
        threshold = severity_rank(policy.block_severity)
    blocking = [
        f for f in relevant if threshold is not None and severity_rank(f.severity) >= threshold
    ]
    ignored_note = ""
    ignored = sum(1 for f in report.findings if f.name in allowances.ignored)
    if ignored:
        ignored_note = f"; {ignored} ignored by policy"
    if covering:
        until = min(covering, key=lambda e: e.expires)
        ignored_note += (
            f"; {len(covering)} allowed by exception(s), the first ending at "
            f"{_when(until.expires)} ({until.id})"
        )
    if expired:
        ignored_note += f"; {expired_note(expired)}"

    if blocking:
        names = sorted({f.name for f in blocking})
        shown = ", ".join(names[:_MAX_NAMED_FINDINGS])
        hidden = len(names) - _MAX_NAMED_FINDINGS
        more = f" and {hidden} more" if hidden > 0 else ""
        blocking_counts = Counter(f.severity.upper() for f in blocking)
        return ImageDecision(
            passed=False,
            reason="VulnerabilitiesFound",
            message=(
                f"{len(blocking)} finding(s) at or above {policy.block_severity.value} "
                f"({_format_counts(blocking_counts)}): {shown}{more}{ignored_note}"
            ),
            counts=count_dict,
            expired=expired,
        )
    summary = _format_counts(counts) if counts else "no findings"
    return ImageDecision(
        passed=True,
        reason="ScanClean",
        message=(
            f"Scan complete: {summary}; none at or above {policy.block_severity.value}"
            f"{ignored_note}"
            if policy.block_severity is not Severity.NONE
            else f"Scan complete: {summary}; policy blocks nothing{ignored_note}"
        ),
        counts=count_dict,
        expired=expired,
        recheck_after=recheck_after,
    )


_NOT_COMPLETE = {
    ScanState.IN_PROGRESS: ("ScanInProgress", "the image scan is still running"),
    ScanState.FAILED: ("ScanFailed", "the image scan failed"),
    ScanState.UNSUPPORTED: ("ScanUnsupported", "ECR cannot scan this image"),
    ScanState.UNAVAILABLE: ("ScanUnavailable", "scan findings are not available"),
    ScanState.MISSING: ("ScanMissing", "no scan has run for this image"),
}
# Enhanced scanning's own words, each with its own reason (what a person does differs: an
# expired eligibility needs a new push or a rescan, an archived image a restore).
_BY_ECR_STATUS = {
    "PENDING": ("ScanPending", "the enhanced scan has not started yet"),
    "SCAN_ELIGIBILITY_EXPIRED": (
        "ScanEligibilityExpired",
        "enhanced scanning no longer scans this image (its scan duration ended)",
    ),
    "FINDINGS_UNAVAILABLE": ("FindingsUnavailable", "ECR has no findings for this image now"),
    "IMAGE_ARCHIVED": ("ImageArchived", "the image is archived and not scanned"),
}


def _without_findings(report: ScanReport, policy: ScanPolicy) -> ImageDecision:
    if report.state is ScanState.INCOMPLETE:
        # Fail closed whatever requireScan says: a partial answer is not a scan result.
        return ImageDecision(
            False,
            "ScanIncomplete",
            f"Blocked: ECR's {report.ecr_status} answer is incomplete ({report.description}); "
            "not read as clean, looking again",
            pending=True,
        )
    reason, what = _BY_ECR_STATUS.get(report.ecr_status.upper()) or _NOT_COMPLETE[report.state]
    detail = f" ({report.ecr_status}: {report.description})" if report.description else ""
    if report.state is ScanState.IN_PROGRESS:
        # Even with requireScan off, a scan that is running will finish soon: wait for it
        # rather than roll out an image whose findings are about to be known.
        return ImageDecision(False, reason, f"Waiting: {what}{detail}", pending=True)
    if policy.require_scan:
        return ImageDecision(False, reason, f"Blocked: {what}{detail}; requireScan is on")
    return ImageDecision(True, reason, f"Allowed without scan results: {what}{detail}")
