"""An image's ECR scan result, summarised: status, severity counts and the serious findings.

``read_scan`` asks ECR once; ``wait_for_scan`` polls until the scan settles (scan on push runs
asynchronously, so CI waits here before deciding); ``blocking_count`` says how many findings are
at or above a severity threshold. ECR answers "no scan yet" with ScanNotFoundException, which is
a real state here (``NOT_SCANNED``), not an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

# Most severe first; ECR's own vocabulary.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
REPORTED_SEVERITIES = frozenset({"CRITICAL", "HIGH"})
NOT_SCANNED = "NOT_SCANNED"
SETTLED_STATUSES = frozenset({"COMPLETE", "FAILED", "UNSUPPORTED_IMAGE", "FINDINGS_UNAVAILABLE"})


class ImageNotFoundError(LookupError):
    """The repository has no image with that tag."""


@dataclass(frozen=True)
class Finding:
    name: str
    severity: str
    package: str
    uri: str
    description: str


@dataclass(frozen=True)
class ScanReport:
    repository: str
    tag: str
    digest: str
    status: str
    status_description: str
    completed_at: datetime | None
    severity_counts: Mapping[str, int] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()  # only the HIGH and CRITICAL ones

    @property
    def settled(self) -> bool:
        return self.status in SETTLED_STATUSES


def read_scan(client: ECRClient, repository: str, tag: str) -> ScanReport:
    """The current scan state of ``repository:tag``."""
    try:
        pages = list(
            client.get_paginator("describe_image_scan_findings").paginate(
                repositoryName=repository, imageId={"imageTag": tag}
            )
        )
    except client.exceptions.ScanNotFoundException:
        digest = _digest(client, repository, tag)
        return ScanReport(repository, tag, digest, NOT_SCANNED, "no scan has run", None)
    except client.exceptions.ImageNotFoundException as error:
        raise ImageNotFoundError(f"no image {repository}:{tag} in ECR") from error
    except client.exceptions.RepositoryNotFoundException as error:
        raise ImageNotFoundError(f"no repository {repository} in ECR") from error

    first = pages[0]
    scan_status = first.get("imageScanStatus", {})
    counts: dict[str, int] = {}
    findings: list[Finding] = []
    for page in pages:
        result = page.get("imageScanFindings", {})
        for severity, count in result.get("findingSeverityCounts", {}).items():
            counts[severity] = count
        for item in result.get("findings", []):
            severity = item.get("severity", "UNDEFINED")
            if severity not in REPORTED_SEVERITIES:
                continue
            attributes = {a["key"]: a.get("value", "") for a in item.get("attributes", [])}
            package = " ".join(
                filter(None, (attributes.get("package_name"), attributes.get("package_version")))
            )
            findings.append(
                Finding(
                    name=item.get("name", "?"),
                    severity=severity,
                    package=package,
                    uri=item.get("uri", ""),
                    description=item.get("description", ""),
                )
            )
    findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.name))
    completed = first.get("imageScanFindings", {}).get("imageScanCompletedAt")
    return ScanReport(
        repository=repository,
        tag=tag,
        digest=first["imageId"].get("imageDigest", ""),
        status=scan_status.get("status", "UNKNOWN"),
        status_description=scan_status.get("description", ""),
        completed_at=completed,
        severity_counts=counts,
        findings=tuple(findings),
    )


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
    """Poll until the scan settles or ``timeout_seconds`` pass; return the last report."""
    deadline = clock() + timeout_seconds
    report = read_scan(client, repository, tag)
    while not report.settled and clock() < deadline:
        progress(report)
        sleep(poll_seconds)
        report = read_scan(client, repository, tag)
    return report


def blocking_count(report: ScanReport, threshold: str) -> int:
    """How many findings are at or above ``threshold`` (one of :data:`SEVERITIES`)."""
    if threshold not in SEVERITIES:
        raise ValueError(f"unknown severity {threshold!r}; use one of {', '.join(SEVERITIES)}")
    blocking = SEVERITIES[: SEVERITIES.index(threshold) + 1]
    return sum(report.severity_counts.get(severity, 0) for severity in blocking)


def _digest(client: ECRClient, repository: str, tag: str) -> str:
    try:
        images = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except client.exceptions.ImageNotFoundException as error:
        raise ImageNotFoundError(f"no image {repository}:{tag} in ECR") from error
    return images["imageDetails"][0].get("imageDigest", "")
