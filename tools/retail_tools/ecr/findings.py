"""An image's ECR scan for people and for CI: read by tag, waited for, gated.

The reading is the operator's own (``retail_operator.aws.images``, with ``detail`` for the
packages and links people want to see), and the gate is the operator's rule
(``scanpolicy.evaluate_scan``) applied to the same facts, so CI and the cluster never disagree
about an image. "No scan yet" is ECR's ScanNotFoundException and is a state (``MISSING``), not
an error; a missing image or repository is ``ImageNotFound``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from retail_operator.aws import images
from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.scanpolicy import ImageDecision, evaluate_scan, severity_rank
from retail_operator.spec import ScanPolicy, Severity

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

SERIOUS = frozenset({"CRITICAL", "HIGH"})
UNSETTLED = frozenset({ScanState.IN_PROGRESS, ScanState.MISSING})


def read_scan(client: ECRClient, repository: str, tag: str) -> ScanReport:
    """The current scan of the image ``repository:tag`` points at, with detail for display."""
    digest = images.image_digest(client, repository, tag)
    report = images.read_scan(client, repository, digest, detail=True)
    if report.state is ScanState.MISSING:
        return replace(report, description="no scan has run")
    return report


def serious(report: ScanReport) -> tuple[Finding, ...]:
    """The HIGH and CRITICAL findings, most severe first."""
    chosen = [f for f in report.findings if f.severity in SERIOUS]
    return tuple(sorted(chosen, key=lambda f: (-severity_rank(f.severity), f.name)))


def wait_for_scan(
    client: ECRClient,
    repository: str,
    tag: str,
    timeout_seconds: float,
    poll_seconds: float = 10.0,
    progress: Callable[[ScanReport], None] = lambda _report: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ScanReport:
    """Poll while the scan is missing or running, up to ``timeout_seconds``; the last report."""
    deadline = clock() + timeout_seconds
    report = read_scan(client, repository, tag)
    while report.state in UNSETTLED and clock() < deadline:
        progress(report)
        sleep(poll_seconds)
        report = read_scan(client, repository, tag)
    return report


def gate(
    report: ScanReport, block_severity: Severity, ignore_cves: Iterable[str] = ()
) -> ImageDecision:
    """May this image ship? The operator's rule, with a completed scan required."""
    policy = ScanPolicy(
        block_severity=block_severity, ignore_cves=tuple(ignore_cves), require_scan=True
    )
    return evaluate_scan(report, policy, datetime.now(UTC))
