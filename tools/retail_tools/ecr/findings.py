"""An image's ECR scan for people and for CI: read by tag, waited for, gated by the
RetailModel's scanPolicy and the platform's RetailModelPolicy documents.

The reading is the operator's own (``retail_operator.aws.images``, with ``detail`` for the
packages and links people want to see), and the gate is the operator's rule
(``scanpolicy.evaluate_scan``) applied to the same facts, so CI and the cluster never disagree
about an image. "No scan yet" is ECR's ScanNotFoundException and is a state (``MISSING``), not
an error; a missing image or repository is ``ImageNotFound``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from retail_operator import policy as policy_rules
from retail_operator.aws import images
from retail_operator.facts import Finding, ScanReport, ScanState
from retail_operator.policy import Policy, Violation
from retail_operator.scanpolicy import ImageDecision, evaluate_scan, severity_rank
from retail_operator.spec import RetailModelSpec, ScanPolicy, Severity

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
    report: ScanReport,
    block_severity: Severity,
    ignore_cves: Iterable[str] = (),
    policy: ScanPolicy | None = None,
) -> ImageDecision:
    """May this image ship? The operator's rule, with a completed scan required: ``policy``
    (a RetailModel's scanPolicy, exceptions included) with ``block_severity`` and
    ``ignore_cves`` on top."""
    base = policy or ScanPolicy()
    merged = base.model_copy(
        update={
            "block_severity": block_severity,
            "ignore_cves": (*base.ignore_cves, *ignore_cves),
            "require_scan": True,
        }
    )
    return evaluate_scan(report, merged, datetime.now(UTC))


@dataclass(frozen=True)
class Policies:
    """What a ``--policy`` file holds: a RetailModel's scanPolicy (the tenant's), and the
    platform's RetailModelPolicy documents that apply to it."""

    scan: ScanPolicy
    spec: RetailModelSpec | None = None  # the whole RetailModel spec, when the file has one
    platform: tuple[Policy, ...] = ()

    def violations(self, now: datetime) -> list[Violation]:
        """The platform rules the RetailModel breaks (its scan gate, image and exceptions)."""
        if not self.platform or self.spec is None:
            return []
        return policy_rules.violations(self.spec, self.platform, now)


def load_policy(path: Path) -> Policies:
    """A RetailModel manifest (or a bare scanPolicy mapping) in ``path``, and any
    RetailModelPolicy documents beside it (YAML documents separated by ``---``)."""
    import yaml
    from pydantic import ValidationError

    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    kinds = [d.get("kind") if isinstance(d, dict) else None for d in documents]
    platform = []
    for document, kind in zip(documents, kinds, strict=True):
        if kind == "RetailModelPolicy":
            try:
                platform.append(Policy.from_body(document))
            except (ValidationError, KeyError) as error:
                raise ValueError(
                    f"{path}: a RetailModelPolicy that cannot be read: {error}"
                ) from None
    models = [d for d, kind in zip(documents, kinds, strict=True) if kind == "RetailModel"]
    others = [d for d, kind in zip(documents, kinds, strict=True) if kind is None]
    if len(models) > 1 or (models and others) or len(others) > 1:
        raise ValueError(f"{path}: give one RetailModel (or one scanPolicy mapping)")
    scan_document = ((models[0].get("spec") or {}).get("scanPolicy") if models else None) or (
        others[0] if others else {}
    )
    try:
        scan = ScanPolicy.model_validate(scan_document)
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(
            f"{path}: scanPolicy.{'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    spec: RetailModelSpec | None = None
    if platform:
        if not models:
            raise ValueError(f"{path}: RetailModelPolicy documents apply to a RetailModel: add one")
        try:
            spec = RetailModelSpec.from_body(models[0].get("spec") or {})
        except ValidationError as error:
            first = error.errors()[0]
            raise ValueError(
                f"{path}: spec.{'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None
    return Policies(scan, spec, tuple(platform))


def allowance(policy: ScanPolicy, finding: str, now: datetime) -> str:
    """What the policy says of one finding: ignored for good, allowed until when and why, an
    exception that has ended, or nothing."""
    if finding in policy.ignore_cves:
        return "ignored (ignoreCVEs: no reason, no end)"
    for exception in policy.exceptions:
        if exception.id == finding:
            when = exception.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
            state = "allowed until" if exception.active(now) else "exception EXPIRED at"
            return f"{state} {when}: {exception.reason}"
    return ""
