"""ECR status words and finding shapes, mapped without calling AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from retail_operator.aws.images import MAX_PAGES, parse_findings, read_scan, scan_state
from retail_operator.facts import Finding, ScanState
from retail_operator.scanpolicy import evaluate_scan
from retail_operator.spec import ScanPolicy

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("COMPLETE", ScanState.COMPLETE),
        ("ACTIVE", ScanState.COMPLETE),
        ("IN_PROGRESS", ScanState.IN_PROGRESS),
        ("PENDING", ScanState.IN_PROGRESS),
        ("FAILED", ScanState.FAILED),
        ("LIMIT_EXCEEDED", ScanState.FAILED),
        ("UNSUPPORTED_IMAGE", ScanState.UNSUPPORTED),
        ("SCAN_ELIGIBILITY_EXPIRED", ScanState.UNAVAILABLE),
        ("FINDINGS_UNAVAILABLE", ScanState.UNAVAILABLE),
        ("SOMETHING_NEW", ScanState.UNAVAILABLE),
    ],
)
def test_every_ecr_status_has_a_state(status: str, state: ScanState) -> None:
    assert scan_state(status) is state


def test_basic_and_enhanced_findings_are_merged() -> None:
    findings = parse_findings(
        {
            "findings": [{"name": "CVE-1", "severity": "HIGH"}],
            "enhancedFindings": [
                {
                    "severity": "CRITICAL",
                    "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2"},
                },
                {"severity": "LOW", "title": "GHSA-3"},
            ],
        }
    )
    assert findings == (
        Finding("CVE-1", "HIGH"),
        Finding("CVE-2", "CRITICAL"),
        Finding("GHSA-3", "LOW"),
    )


class PagedEcr:
    """describe_image_scan_findings answered from a list of pages (each page's nextToken
    points at the next one), as ECR does."""

    def __init__(self, *pages: dict[str, Any], endless: bool = False) -> None:
        self.pages, self.endless, self.requests = list(pages), endless, 0

    def describe_image_scan_findings(self, **kwargs: Any) -> dict[str, Any]:
        self.requests += 1
        index = 0 if self.endless else int(kwargs.get("nextToken", 0))
        page = dict(self.pages[index])
        if self.endless or index + 1 < len(self.pages):
            page["nextToken"] = str(index + 1)
        return page


def scan_answer(status: str, findings: Any = None, counts: Any = None) -> dict[str, Any]:
    page: dict[str, Any] = {"imageScanStatus": {"status": status}}
    if findings is not None:
        page["imageScanFindings"] = {"findings": findings, "findingSeverityCounts": counts or {}}
    return page


def decide(client: Any, policy: ScanPolicy | None = None) -> tuple[ScanState, str, bool]:
    report = read_scan(client, "mlops/retail-api", DIGEST)
    decision = evaluate_scan(report, policy or ScanPolicy(), datetime.now(UTC))
    return report.state, decision.reason, decision.passed


HIGH = {"name": "CVE-1", "severity": "HIGH"}


@pytest.mark.parametrize("status", ["COMPLETE", "ACTIVE"])
def test_a_complete_answer_without_a_findings_object_is_never_clean(status: str) -> None:
    state, reason, passed = decide(PagedEcr(scan_answer(status)))
    assert (state, reason, passed) == (ScanState.INCOMPLETE, "ScanIncomplete", False)
    # …not even when the policy would allow an image without a scan.
    _, _, passed = decide(PagedEcr(scan_answer(status)), ScanPolicy(require_scan=False))
    assert not passed


def test_a_findings_list_shorter_than_its_counts_is_incomplete() -> None:
    cut = PagedEcr(scan_answer("COMPLETE", [HIGH], {"HIGH": 1, "CRITICAL": 1}))
    report = read_scan(cut, "mlops/retail-api", DIGEST)
    assert report.state is ScanState.INCOMPLETE
    assert "its counts say CRITICAL 1, HIGH 1, its list has HIGH 1" in report.description


def test_counts_are_matched_severity_by_severity_not_in_total() -> None:
    """{CRITICAL: 1, LOW: 1} beside two LOWs adds up, and hides a CRITICAL: never clean."""
    low = [{"name": f"CVE-{n}", "severity": "LOW"} for n in (1, 2)]
    swapped = PagedEcr(scan_answer("COMPLETE", low, {"CRITICAL": 1, "LOW": 1}))
    state, reason, passed = decide(swapped)
    assert (state, reason, passed) == (ScanState.INCOMPLETE, "ScanIncomplete", False)


def test_every_page_is_read_and_a_whole_list_is_complete() -> None:
    critical = {"name": "CVE-2", "severity": "CRITICAL"}
    pages = PagedEcr(
        scan_answer("COMPLETE", [HIGH], {"HIGH": 1, "CRITICAL": 1}),
        scan_answer("COMPLETE", [critical], {"HIGH": 1, "CRITICAL": 1}),
    )
    state, reason, passed = decide(pages)
    assert (state, reason, passed) == (ScanState.COMPLETE, "VulnerabilitiesFound", False)
    assert pages.requests == 2


def test_an_answer_that_never_ends_is_incomplete() -> None:
    client = PagedEcr(scan_answer("COMPLETE", [], {}), endless=True)
    state, reason, _ = decide(client)
    assert (state, reason) == (ScanState.INCOMPLETE, "ScanIncomplete")
    assert client.requests == MAX_PAGES


def test_an_empty_complete_scan_is_clean() -> None:
    assert decide(PagedEcr(scan_answer("COMPLETE", [], {}))) == (
        ScanState.COMPLETE,
        "ScanClean",
        True,
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("PENDING", "ScanPending"),
        ("SCAN_ELIGIBILITY_EXPIRED", "ScanEligibilityExpired"),
        ("FINDINGS_UNAVAILABLE", "FindingsUnavailable"),
        ("IMAGE_ARCHIVED", "ImageArchived"),
    ],
)
def test_each_enhanced_scanning_state_has_its_own_reason_and_blocks(
    status: str, reason: str
) -> None:
    _, got, passed = decide(PagedEcr(scan_answer(status)))
    assert (got, passed) == (reason, False)
