"""ECR look-ups: a tag's digest and that digest's scan report, read once here for everyone.

``image_digest`` and ``read_scan`` are the one reader of ECR scans: the operator calls them
through ``ImageInspector`` (cached and shared across RetailModels: tags with a short TTL, since
a mutable tag may move; scan reports per digest, a finished scan for a minute or more, a
running one for seconds), and ``retailctl ecr findings`` calls them with ``detail=True`` for
display. Every ECR scan status is folded into ``facts.ScanState`` explicitly, including
enhanced scanning's; every boto3 failure becomes an ``errors`` value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from retail_operator.aws import clients
from retail_operator.cache import TtlCache
from retail_operator.errors import ImageNotFound
from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.spec import ImageRef

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

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
# Pages of findings read at most (1000 findings each): past that the answer is not trusted.
MAX_PAGES = 100


def scan_state(ecr_status: str) -> ScanState:
    """ECR's status word as a ScanState; an unknown new status counts as unavailable."""
    return _STATES.get(ecr_status.upper(), ScanState.UNAVAILABLE)


def parse_findings(scan: Mapping[str, Any], *, detail: bool = False) -> tuple[Finding, ...]:
    """Basic scanning's ``findings`` and enhanced scanning's ``enhancedFindings``, as one list;
    with ``detail``, each with its package and advisory link (for people, not for decisions)."""
    parsed = []
    for item in scan.get("findings", []):
        package = uri = ""
        if detail:
            attributes = {a["key"]: a.get("value", "") for a in item.get("attributes", [])}
            names = (attributes.get("package_name"), attributes.get("package_version"))
            package, uri = " ".join(filter(None, names)), str(item.get("uri", ""))
        name, severity = str(item.get("name", "")), str(item.get("severity", "UNDEFINED"))
        parsed.append(Finding(name, severity, package, uri))
    for item in scan.get("enhancedFindings", []):
        details = item.get("packageVulnerabilityDetails", {})
        package = uri = ""
        if detail:
            first = (details.get("vulnerablePackages") or [{}])[0]
            package = " ".join(filter(None, (first.get("name"), first.get("version"))))
            uri = str(details.get("sourceUrl", ""))
        name = details.get("vulnerabilityId") or item.get("title") or item.get("findingArn", "")
        severity = str(item.get("severity", "UNDEFINED"))
        parsed.append(Finding(str(name), severity, package, uri))
    return tuple(parsed)


def image_digest(
    client: ECRClient, repository: str, tag: str, *, registry_id: str | None = None
) -> str:
    """The digest ``repository:tag`` points at now; ``ImageNotFound`` if there is none."""
    missing = ImageNotFound(f"{repository}:{tag} does not exist in ECR")
    query: dict[str, Any] = {"repositoryName": repository, "imageIds": [{"imageTag": tag}]}
    try:
        response = client.describe_images(**_registry(registry_id), **query)
    except ClientError as error:
        if clients.error_code(error) in _NOT_FOUND:
            raise missing from None
        raise clients.translate(error, f"ECR {repository}") from None
    except BotoCoreError as error:
        raise clients.translate(error, f"ECR {repository}") from None
    details = response.get("imageDetails", [])
    if not details or "imageDigest" not in details[0]:
        raise missing
    return str(details[0]["imageDigest"])


def read_scan(
    client: ECRClient,
    repository: str,
    digest: str,
    *,
    registry_id: str | None = None,
    detail: bool = False,
    on_request: Callable[[], object] = lambda: None,
) -> ScanReport:
    """The scan of ``repository@digest``, every page of findings; ``on_request`` is called
    before each ECR request (the operator counts them). No scan yet is ``MISSING``.

    Fails closed: a COMPLETE (or enhanced ACTIVE) answer without a findings object, or whose
    list of findings does not match its own counts severity by severity (a list cut short, or
    counts of one severity beside findings of another), or with more pages than ``MAX_PAGES``,
    is ``INCOMPLETE``, never clean (enhanced scanning has answered COMPLETE before its findings
    existed)."""
    where = f"ECR scan of {repository}"
    findings: list[Finding] = []
    status: Mapping[str, Any] = {}
    counts: dict[str, int] = {}
    completed_at = ""
    token: str | None = None
    pages = 0
    had_findings_object = False
    while True:
        pages += 1
        if pages > MAX_PAGES:
            return _incomplete(digest, status, f"more than {MAX_PAGES} pages of findings")
        on_request()
        kwargs: dict[str, Any] = {
            **_registry(registry_id),
            "repositoryName": repository,
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
                raise ImageNotFound(f"{repository}@{digest} does not exist in ECR") from None
            raise clients.translate(error, where) from None
        except BotoCoreError as error:
            raise clients.translate(error, where) from None
        status = page.get("imageScanStatus", {}) or status
        scan: Mapping[str, Any] = page.get("imageScanFindings") or {}
        had_findings_object = had_findings_object or "imageScanFindings" in page
        findings.extend(parse_findings(scan, detail=detail))
        counts.update({str(k): int(v) for k, v in scan.get("findingSeverityCounts", {}).items()})
        if scan.get("imageScanCompletedAt"):
            completed_at = _timestamp(scan["imageScanCompletedAt"])
        token = page.get("nextToken")
        if not token:
            break
    ecr_status = str(status.get("status", "NONE"))
    state = scan_state(ecr_status)
    if state is ScanState.COMPLETE:
        if not had_findings_object:
            return _incomplete(digest, status, "no findings object in the answer")
        stated = {severity.upper(): n for severity, n in counts.items() if n}
        listed = dict(Counter(f.severity.upper() for f in findings))
        if stated != listed:
            return _incomplete(
                digest,
                status,
                f"its counts say {_by_severity(stated)}, its list has {_by_severity(listed)}",
            )
    return ScanReport(
        digest=digest,
        state=state,
        ecr_status=ecr_status,
        description=str(status.get("description", "")),
        findings=tuple(findings),
        completed_at=completed_at,
        severity_counts=counts if detail else {},
    )


def _by_severity(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{severity} {n}" for severity, n in sorted(counts.items())) or "none"


def _incomplete(digest: str, status: Mapping[str, Any], why: str) -> ScanReport:
    ecr_status = str(status.get("status", "NONE"))
    return ScanReport(digest, ScanState.INCOMPLETE, ecr_status, description=why)


def _registry(registry_id: str | None) -> dict[str, Any]:
    """``registryId`` when one is named; else the caller's own account's registry."""
    return {"registryId": registry_id} if registry_id else {}


def _timestamp(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


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
            (image.repository, image.tag), lambda: clients.WORKERS.run(self._describe, image)
        )

    async def scan(self, image: ImageRef, digest: str) -> ScanReport:
        return await self._scans.get(
            (image.repository, digest), lambda: clients.WORKERS.run(self._findings, image, digest)
        )

    def _count(self) -> None:
        self.calls += 1

    def _describe(self, image: ImageRef) -> str:
        self._count()
        return image_digest(
            clients.ecr(image.region),
            image.repository_name,
            image.tag,
            registry_id=image.registry_id,
        )

    def _findings(self, image: ImageRef, digest: str) -> ScanReport:
        return read_scan(
            clients.ecr(image.region),
            image.repository_name,
            digest,
            registry_id=image.registry_id,
            on_request=self._count,
        )
