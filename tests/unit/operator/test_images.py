"""ECR status words and finding shapes, mapped without calling AWS."""

from __future__ import annotations

import pytest

from retail_operator.aws.images import parse_findings, scan_state
from retail_operator.facts import Finding, ScanState


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
