"""May this image roll out? A pure function of a scan report and the RetailModel's scan policy.

No I/O here: the ECR adapter produces a ``ScanReport`` and this module turns it, with the
spec's ``scanPolicy``, into an ``ImageDecision`` that carries the condition to report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from retail_operator.facts import ScanReport, ScanState
from retail_operator.spec import ScanPolicy, Severity

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


def _format_counts(counts: Counter[str]) -> str:
    ordered = sorted(counts, key=lambda s: (-severity_rank(s), s))
    return ", ".join(f"{severity}: {counts[severity]}" for severity in ordered)


def evaluate_scan(report: ScanReport, policy: ScanPolicy) -> ImageDecision:
    """Apply ``policy`` to ``report``."""
    if report.state is not ScanState.COMPLETE:
        return _without_findings(report, policy)

    ignored = set(policy.ignore_cves)
    relevant = [f for f in report.findings if f.name not in ignored]
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
    skipped = len(report.findings) - len(relevant)
    if skipped:
        ignored_note = f"; {skipped} ignored by policy"

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
    )


_NOT_COMPLETE = {
    ScanState.IN_PROGRESS: ("ScanInProgress", "the image scan is still running"),
    ScanState.FAILED: ("ScanFailed", "the image scan failed"),
    ScanState.UNSUPPORTED: ("ScanUnsupported", "ECR cannot scan this image"),
    ScanState.UNAVAILABLE: ("ScanUnavailable", "scan findings are not available"),
    ScanState.MISSING: ("ScanMissing", "no scan has run for this image"),
}


def _without_findings(report: ScanReport, policy: ScanPolicy) -> ImageDecision:
    reason, what = _NOT_COMPLETE[report.state]
    detail = f" ({report.ecr_status}: {report.description})" if report.description else ""
    if report.state is ScanState.IN_PROGRESS:
        # Even with requireScan off, a scan that is running will finish soon: wait for it
        # rather than roll out an image whose findings are about to be known.
        return ImageDecision(False, reason, f"Waiting: {what}{detail}", pending=True)
    if policy.require_scan:
        return ImageDecision(False, reason, f"Blocked: {what}{detail}; requireScan is on")
    return ImageDecision(True, reason, f"Allowed without scan results: {what}{detail}")
