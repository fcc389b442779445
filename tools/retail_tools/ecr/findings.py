"""An image's ECR scan for people and for CI: status, severity counts, the serious findings.

``read_scan`` asks ECR once; ``wait_for_scan`` polls while the scan is running or not yet
started (scan on push starts shortly after the push); ``gate`` decides whether the image may
ship. The gate is the operator's own rule (``scanpolicy.evaluate_scan``) applied to the same
facts, so CI and the cluster never disagree about an image. "No scan yet" is ECR's
ScanNotFoundException and is a state here (``MISSING``), not an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retail_operator import facts
from retail_operator.aws.images import scan_state
from retail_operator.facts import ScanState
from retail_operator.scanpolicy import ImageDecision, evaluate_scan, severity_rank
from retail_operator.spec import ScanPolicy, Severity

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

SERIOUS = frozenset({"CRITICAL", "HIGH"})
UNSETTLED = frozenset({ScanState.IN_PROGRESS, ScanState.MISSING})


class ImageNotFoundError(LookupError):
    """The repository, or an image with that tag in it, does not exist."""


@dataclass(frozen=True)
class Finding:
    name: str
    severity: str
    package: str = ""
    uri: str = ""


@dataclass(frozen=True)
class ScanReport:
    repository: str
    tag: str
    digest: str
    state: ScanState
    ecr_status: str
    description: str = ""
    completed_at: datetime | None = None
    severity_counts: Mapping[str, int] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()

    @property
    def serious(self) -> tuple[Finding, ...]:
        """The HIGH and CRITICAL findings, most severe first."""
        chosen = [f for f in self.findings if f.severity in SERIOUS]
        return tuple(sorted(chosen, key=lambda f: (-severity_rank(f.severity), f.name)))

    def as_fact(self) -> facts.ScanReport:
        """The report as the operator's scan policy reads it."""
        return facts.ScanReport(
            digest=self.digest,
            state=self.state,
            ecr_status=self.ecr_status,
            description=self.description,
            findings=tuple(facts.Finding(f.name, f.severity) for f in self.findings),
            completed_at=self.completed_at.isoformat() if self.completed_at else "",
        )


def read_scan(client: ECRClient, repository: str, tag: str) -> ScanReport:
    """The current scan of ``repository:tag``."""
    try:
        pages = list(
            client.get_paginator("describe_image_scan_findings").paginate(
                repositoryName=repository, imageId={"imageTag": tag}
            )
        )
    except client.exceptions.ScanNotFoundException:
        digest = _digest(client, repository, tag)
        return ScanReport(repository, tag, digest, ScanState.MISSING, "NONE", "no scan has run")
    except client.exceptions.ImageNotFoundException as error:
        raise ImageNotFoundError(f"no image {repository}:{tag} in ECR") from error
    except client.exceptions.RepositoryNotFoundException as error:
        raise ImageNotFoundError(f"no repository {repository} in ECR") from error

    first = pages[0]
    status = first.get("imageScanStatus", {})
    scan = first.get("imageScanFindings", {})
    findings: list[Finding] = []
    for page in pages:
        findings.extend(_parse(page.get("imageScanFindings", {})))
    ecr_status = status.get("status", "NONE")
    return ScanReport(
        repository=repository,
        tag=tag,
        digest=first.get("imageId", {}).get("imageDigest", ""),
        state=scan_state(ecr_status),
        ecr_status=ecr_status,
        description=status.get("description", ""),
        completed_at=scan.get("imageScanCompletedAt"),
        severity_counts={str(k): v for k, v in scan.get("findingSeverityCounts", {}).items()},
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
    return evaluate_scan(report.as_fact(), policy)


def _parse(scan: Mapping[str, Any]) -> list[Finding]:
    """Basic scanning's ``findings`` and enhanced scanning's ``enhancedFindings``."""
    parsed = []
    for item in scan.get("findings", []):
        attributes = {a["key"]: a.get("value", "") for a in item.get("attributes", [])}
        package = " ".join(
            filter(None, (attributes.get("package_name"), attributes.get("package_version")))
        )
        parsed.append(
            Finding(
                name=item.get("name", "?"),
                severity=item.get("severity", "UNDEFINED"),
                package=package,
                uri=item.get("uri", ""),
            )
        )
    for item in scan.get("enhancedFindings", []):
        details = item.get("packageVulnerabilityDetails", {})
        packages = details.get("vulnerablePackages") or [{}]
        package = " ".join(filter(None, (packages[0].get("name"), packages[0].get("version"))))
        parsed.append(
            Finding(
                name=details.get("vulnerabilityId") or item.get("title", "?"),
                severity=item.get("severity", "UNDEFINED"),
                package=package,
                uri=details.get("sourceUrl", ""),
            )
        )
    return parsed


def _digest(client: ECRClient, repository: str, tag: str) -> str:
    try:
        images = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except client.exceptions.ImageNotFoundException as error:
        raise ImageNotFoundError(f"no image {repository}:{tag} in ECR") from error
    return images["imageDetails"][0].get("imageDigest", "")
