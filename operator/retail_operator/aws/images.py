"""ECR look-ups: a tag's digest and that digest's scan report, cached and shared.

Tags are resolved with a short TTL (a mutable tag may move); scan reports are cached per digest
(a finished scan for a minute or more, a running one for seconds). Every ECR scan status is
folded into ``facts.ScanState`` explicitly, including enhanced scanning's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from retail_operator.aws import clients
from retail_operator.cache import TtlCache
from retail_operator.errors import ImageNotFound
from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.spec import ImageRef

_STATES = {
    "COMPLETE": ScanState.COMPLETE,
    "ACTIVE": ScanState.COMPLETE,
    "IN_PROGRESS": ScanState.IN_PROGRESS,
    "PENDING": ScanState.IN_PROGRESS,
    "FAILED": ScanState.FAILED,
    "LIMIT_EXCEEDED": ScanState.FAILED,
    "UNSUPPORTED_IMAGE": ScanState.UNSUPPORTED,
    "SCAN_ELIGIBILITY_EXPIRED": ScanState.UNAVAILABLE,
    "FINDINGS_UNAVAILABLE": ScanState.UNAVAILABLE,
    "IMAGE_ARCHIVED": ScanState.UNAVAILABLE,
}
_NOT_FOUND = frozenset({"ImageNotFoundException", "RepositoryNotFoundException"})


def scan_state(ecr_status: str) -> ScanState:
    """ECR's status word as a ScanState; an unknown new status counts as unavailable."""
    return _STATES.get(ecr_status.upper(), ScanState.UNAVAILABLE)


def parse_findings(findings: Mapping[str, Any]) -> tuple[Finding, ...]:
    """Basic scanning's ``findings`` and enhanced scanning's ``enhancedFindings``, as one list."""
    parsed = [
        Finding(name=str(f.get("name", "")), severity=str(f.get("severity", "UNDEFINED")))
        for f in findings.get("findings", [])
    ]
    for f in findings.get("enhancedFindings", []):
        details = f.get("packageVulnerabilityDetails", {})
        name = details.get("vulnerabilityId") or f.get("title") or f.get("findingArn", "")
        parsed.append(Finding(name=str(name), severity=str(f.get("severity", "UNDEFINED"))))
    return tuple(parsed)


class ImageInspector:
    """Resolves tags and reads scans, sharing results across every RetailModel."""

    def __init__(self, *, tag_ttl: float = 15.0, scan_ttl: float = 60.0) -> None:
        self._digests: TtlCache[tuple[str, str], str] = TtlCache(lambda _: tag_ttl)
        self._scans: TtlCache[tuple[str, str], ScanReport] = TtlCache(
            lambda report: scan_ttl if report.state is ScanState.COMPLETE else 3.0
        )
        self.calls = 0  # ECR API calls made, for the scale benchmark

    async def digest(self, image: ImageRef) -> str:
        return await self._digests.get(
            (image.repository, image.tag), lambda: asyncio.to_thread(self._describe, image)
        )

    async def scan(self, image: ImageRef, digest: str) -> ScanReport:
        return await self._scans.get(
            (image.repository, digest), lambda: asyncio.to_thread(self._findings, image, digest)
        )

    def _describe(self, image: ImageRef) -> str:
        self.calls += 1
        try:
            response = clients.ecr(image.region).describe_images(
                registryId=image.registry_id,
                repositoryName=image.repository_name,
                imageIds=[{"imageTag": image.tag}],
            )
        except ClientError as error:
            if clients.error_code(error) in _NOT_FOUND:
                raise ImageNotFound(
                    f"{image.repository}:{image.tag} does not exist in ECR"
                ) from None
            raise clients.translate(error, f"ECR {image.repository_name}") from None
        except BotoCoreError as error:
            raise clients.translate(error, f"ECR {image.repository_name}") from None
        details = response.get("imageDetails", [])
        if not details or "imageDigest" not in details[0]:
            raise ImageNotFound(f"{image.repository}:{image.tag} does not exist in ECR")
        return str(details[0]["imageDigest"])

    def _findings(self, image: ImageRef, digest: str) -> ScanReport:
        client = clients.ecr(image.region)
        findings: list[Finding] = []
        status: Mapping[str, Any] = {}
        completed_at = ""
        token: str | None = None
        while True:
            self.calls += 1
            kwargs: dict[str, Any] = {
                "registryId": image.registry_id,
                "repositoryName": image.repository_name,
                "imageId": {"imageDigest": digest},
                "maxResults": 1000,
            }
            if token:
                kwargs["nextToken"] = token
            try:
                page = client.describe_image_scan_findings(**kwargs)
            except ClientError as error:
                code = clients.error_code(error)
                if code == "ScanNotFoundException":
                    return ScanReport(digest, ScanState.MISSING, "NONE")
                if code in _NOT_FOUND:
                    raise ImageNotFound(f"{image.repository}@{digest} no longer exists") from None
                raise clients.translate(error, f"ECR scan of {image.repository_name}") from None
            except BotoCoreError as error:
                raise clients.translate(error, f"ECR scan of {image.repository_name}") from None
            status = page.get("imageScanStatus", {}) or status
            scan = page.get("imageScanFindings", {})
            findings.extend(parse_findings(scan))
            if scan.get("imageScanCompletedAt"):
                completed_at = str(scan["imageScanCompletedAt"])
            token = page.get("nextToken")
            if not token:
                break
        ecr_status = str(status.get("status", "NONE"))
        return ScanReport(
            digest=digest,
            state=scan_state(ecr_status),
            ecr_status=ecr_status,
            description=str(status.get("description", "")),
            findings=tuple(findings),
            completed_at=completed_at,
        )
