"""The rollout gate: every scan state and policy knob, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.scanpolicy import evaluate_scan
from retail_operator.spec import ScanException, ScanPolicy, Severity

DIGEST = "sha256:" + "a" * 64


def report(*findings: tuple[str, str], state: ScanState = ScanState.COMPLETE) -> ScanReport:
    return ScanReport(
        DIGEST, state, state.value, findings=tuple(Finding(n, s) for n, s in findings)
    )


def test_clean_scan_passes() -> None:
    decision = evaluate_scan(report(), ScanPolicy(), NOW)
    assert decision.passed and decision.reason == "ScanClean"
    assert "no findings" in decision.message


def test_high_finding_blocks_at_default_policy_with_counts_in_message() -> None:
    decision = evaluate_scan(
        report(("CVE-2024-1", "HIGH"), ("CVE-2024-2", "CRITICAL"), ("CVE-2024-3", "LOW")),
        ScanPolicy(),
        NOW,
    )
    assert not decision.passed
    assert decision.reason == "VulnerabilitiesFound"
    assert "CRITICAL: 1, HIGH: 1" in decision.message
    assert "CVE-2024-1" in decision.message and "CVE-2024-3" not in decision.message
    assert decision.counts == {"CRITICAL": 1, "HIGH": 1, "LOW": 1}


def test_findings_below_threshold_pass() -> None:
    decision = evaluate_scan(
        report(("CVE-1", "MEDIUM")), ScanPolicy(block_severity=Severity.CRITICAL), NOW
    )
    assert decision.passed
    assert "MEDIUM: 1" in decision.message


def test_ignored_cve_never_blocks_and_is_reported_as_ignored() -> None:
    policy = ScanPolicy(ignore_cves=("CVE-9999-9999",))
    decision = evaluate_scan(report(("CVE-9999-9999", "HIGH")), policy, NOW)
    assert decision.passed
    assert "1 ignored by policy" in decision.message
    assert decision.counts == {}


def test_ignored_cve_does_not_hide_other_findings() -> None:
    policy = ScanPolicy(ignore_cves=("CVE-9999-9999",))
    decision = evaluate_scan(report(("CVE-9999-9999", "HIGH"), ("CVE-1", "HIGH")), policy, NOW)
    assert not decision.passed and "CVE-1" in decision.message


def test_policy_none_never_blocks_on_findings() -> None:
    decision = evaluate_scan(
        report(("CVE-1", "CRITICAL")), ScanPolicy(block_severity=Severity.NONE), NOW
    )
    assert decision.passed


@pytest.mark.parametrize("severity", ["UNTRIAGED", "UNDEFINED", "INFORMATIONAL", "bogus"])
def test_unrated_findings_do_not_block_at_low(severity: str) -> None:
    decision = evaluate_scan(
        report(("X-1", severity)), ScanPolicy(block_severity=Severity.LOW), NOW
    )
    assert decision.passed


def test_many_findings_are_named_up_to_a_limit() -> None:
    findings = [(f"CVE-2024-{i:04d}", "HIGH") for i in range(8)]
    decision = evaluate_scan(report(*findings), ScanPolicy(), NOW)
    assert "and 3 more" in decision.message


def test_scan_in_progress_waits_even_without_require_scan() -> None:
    for require in (True, False):
        decision = evaluate_scan(
            report(state=ScanState.IN_PROGRESS), ScanPolicy(require_scan=require), NOW
        )
        assert not decision.passed and decision.pending
        assert decision.reason == "ScanInProgress"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (ScanState.MISSING, "ScanMissing"),
        (ScanState.FAILED, "ScanFailed"),
        (ScanState.UNSUPPORTED, "ScanUnsupported"),
        (ScanState.UNAVAILABLE, "ScanUnavailable"),
    ],
)
def test_no_findings_block_only_when_scan_required(state: ScanState, reason: str) -> None:
    blocked = evaluate_scan(report(state=state), ScanPolicy(require_scan=True), NOW)
    allowed = evaluate_scan(report(state=state), ScanPolicy(require_scan=False), NOW)
    assert (blocked.passed, blocked.reason, blocked.pending) == (False, reason, False)
    assert (allowed.passed, allowed.reason) == (True, reason)


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def exception(id_: str, expires: datetime, reason: str = "no fix upstream") -> ScanException:
    return ScanException(id=id_, reason=reason, expires=expires)


def test_an_active_exception_allows_its_finding_and_says_until_when() -> None:
    policy = ScanPolicy(exceptions=(exception("CVE-1", NOW + timedelta(hours=2)),))
    decision = evaluate_scan(report(("CVE-1", "CRITICAL")), policy, NOW)
    assert decision.passed and decision.reason == "ScanClean"
    assert "1 allowed by exception(s), the first ending at 2026-12-01T14:00:00Z (CVE-1)" in (
        decision.message
    )
    assert decision.recheck_after == 2 * 3600  # decide again the moment it ends
    assert decision.expired == ()


def test_an_exception_stops_applying_the_moment_it_expires() -> None:
    ends = NOW + timedelta(seconds=1)
    policy = ScanPolicy(exceptions=(exception("CVE-1", ends, reason="vendor patch due"),))
    findings = report(("CVE-1", "HIGH"))
    assert evaluate_scan(findings, policy, ends - timedelta(microseconds=1)).passed
    decision = evaluate_scan(findings, policy, ends)
    assert not decision.passed and decision.reason == "VulnerabilitiesFound"
    assert decision.expired == policy.exceptions
    assert (
        "the exception for CVE-1 expired at 2026-12-01T12:00:01Z (reason was: vendor patch due)"
        in decision.message
    )
    assert decision.recheck_after is None


def test_an_exception_covers_only_its_own_finding() -> None:
    policy = ScanPolicy(exceptions=(exception("CVE-1", NOW + timedelta(days=1)),))
    decision = evaluate_scan(report(("CVE-1", "HIGH"), ("CVE-2", "HIGH")), policy, NOW)
    assert not decision.passed and "CVE-2" in decision.message
    assert decision.counts == {"HIGH": 1}


def test_an_expired_exception_for_an_absent_finding_is_not_news() -> None:
    policy = ScanPolicy(exceptions=(exception("CVE-7", NOW - timedelta(days=1)),))
    decision = evaluate_scan(report(("CVE-1", "LOW")), policy, NOW)
    assert decision.passed and decision.expired == ()
    assert "expired" not in decision.message


def test_ignore_cves_is_an_exception_without_an_end() -> None:
    policy = ScanPolicy(ignore_cves=("CVE-1",))
    decision = evaluate_scan(report(("CVE-1", "CRITICAL")), policy, NOW + timedelta(days=3650))
    assert decision.passed and decision.recheck_after is None
