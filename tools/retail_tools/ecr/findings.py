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
from pathlib import Path
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


def load_policy(path: Path) -> ScanPolicy:
    """The scanPolicy of a RetailModel manifest (or a bare scanPolicy mapping) in ``path``."""
    import yaml
    from pydantic import ValidationError

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if isinstance(document, dict) and document.get("kind") == "RetailModel":
        document = (document.get("spec") or {}).get("scanPolicy") or {}
    try:
        return ScanPolicy.model_validate(document or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"{path}: scanPolicy.{where}: {first['msg']}") from None


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
