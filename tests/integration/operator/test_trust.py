"""Trust over time, against the real API server and the ECR stand-in: an exception that
expires while the RetailModel runs blocks the image at the next check with no spec change, and
findings published after a rollout are noticed on the image that runs, which keeps running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.operator.conftest import REPOSITORY, Scenario

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

CVE = "CVE-2026-0001"


def test_an_exception_that_expires_blocks_the_image_without_a_spec_change(
    scenario: Scenario,
) -> None:
    digest = scenario.image("v1-excepted", findings=[(CVE, "HIGH")])
    manifest = scenario.manifest("prices", "v1-excepted", scenario.model())
    expires = (datetime.now(UTC) + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest["spec"]["scanPolicy"] = {
        "exceptions": [{"id": CVE, "reason": "vendor fix due next sprint", "expires": expires}]
    }
    scenario.apply(manifest)
    allowed = scenario.wait_condition("prices", "ImageScanPassed", "True", "ScanClean")
    assert f"allowed by exception(s), the first ending at {expires} ({CVE})" in allowed["message"]
    scenario.wait_condition("prices", "Ready", "True")
    generation = scenario.get("retailmodel", "prices")["metadata"]["generation"]

    blocked = scenario.wait_condition(
        "prices", "ImageScanPassed", "False", "VulnerabilitiesFound", timeout=40
    )
    assert (
        f"the exception for {CVE} expired at {expires} (reason was: vendor fix due next sprint)"
        in blocked["message"]
    )
    assert scenario.get("retailmodel", "prices")["metadata"]["generation"] == generation
    warnings = scenario.wait_for(
        "an ExceptionExpired warning",
        lambda: [
            e
            for e in scenario.events("prices")
            if e["reason"] == "ExceptionExpired" and e["type"] == "Warning"
        ],
    )
    assert CVE in warnings[0]["message"] and expires in warnings[0]["message"]
    # The running pods are never stopped by the gate: the digest stays.
    running = f"{scenario.aws.repository_uri(REPOSITORY)}@{digest}"
    assert scenario.deployment_image("prices") == running


def test_findings_published_after_the_rollout_are_noticed_on_the_running_image(
    scenario: Scenario,
) -> None:
    digest = scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    scenario.wait_condition("prices", "RunningImageCompliant", "True", "Compliant")

    scenario.aws.set_scan(REPOSITORY, digest, "COMPLETE", [("CVE-2026-0002", "CRITICAL")])
    condition = scenario.wait_condition(
        "prices", "RunningImageCompliant", "False", "NewVulnerabilities", timeout=40
    )
    assert "CVE-2026-0002" in condition["message"] and "CRITICAL: 1" in condition["message"]
    assert "keeps serving" in condition["message"]
    ready = scenario.wait_condition("prices", "Ready", "False", "NewVulnerabilities")
    assert "roll out an image with the fix" in ready["message"]
    scenario.wait_for(
        "a NewVulnerabilities warning",
        lambda: [
            e
            for e in scenario.events("prices")
            if e["reason"] == "NewVulnerabilities" and e["type"] == "Warning"
        ],
    )
    running = f"{scenario.aws.repository_uri(REPOSITORY)}@{digest}"
    assert scenario.deployment_image("prices") == running
    available = scenario.condition("prices", "Available")
    assert available is not None and available["status"] == "True"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"imageScanStatus": {"status": "COMPLETE"}}, "ScanIncomplete"),
        ({"imageScanStatus": {"status": "ACTIVE"}}, "ScanIncomplete"),
        (
            {
                "imageScanStatus": {"status": "COMPLETE"},
                "imageScanFindings": {"findings": [], "findingSeverityCounts": {"CRITICAL": 3}},
            },
            "ScanIncomplete",
        ),
        ({"imageScanStatus": {"status": "FINDINGS_UNAVAILABLE"}}, "FindingsUnavailable"),
        ({"imageScanStatus": {"status": "SCAN_ELIGIBILITY_EXPIRED"}}, "ScanEligibilityExpired"),
    ],
    ids=["complete-no-findings", "active-no-findings", "counts-exceed-list", "unavailable",
         "eligibility-expired"],
)  # fmt: skip
def test_a_partial_ecr_answer_is_refused_with_its_own_reason(
    scenario: Scenario, answer: dict[str, object], reason: str
) -> None:
    digest = scenario.image("v1-partial", status="")
    scenario.aws.set_scan_result(REPOSITORY, digest, answer)
    scenario.apply(scenario.manifest("prices", "v1-partial", scenario.model()))
    condition = scenario.wait_condition("prices", "ImageScanPassed", "False", reason)
    assert "Blocked" in condition["message"]
    assert scenario.get("deployment", "prices") is None
