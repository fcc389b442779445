"""What the operator observes about the outside world, as plain immutable values.

The AWS and Kubernetes adapters produce these; the pure decision modules (``scanpolicy``,
``conditions``, ``rendering``) consume them. Keeping them here lets both sides depend on data
rather than on each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class ScanState(StrEnum):
    """ECR's scan statuses folded into what a rollout decision needs to know."""

    COMPLETE = "COMPLETE"  # basic COMPLETE, enhanced ACTIVE, with every finding read
    IN_PROGRESS = "IN_PROGRESS"  # IN_PROGRESS, PENDING: wait and look again
    FAILED = "FAILED"  # FAILED, LIMIT_EXCEEDED
    UNSUPPORTED = "UNSUPPORTED"  # UNSUPPORTED_IMAGE: the scanner cannot read this image
    UNAVAILABLE = "UNAVAILABLE"  # SCAN_ELIGIBILITY_EXPIRED, FINDINGS_UNAVAILABLE, IMAGE_ARCHIVED
    MISSING = "MISSING"  # no scan has ever run for this digest
    # COMPLETE/ACTIVE but the answer is partial: no findings object, or fewer findings than
    # its own counts (a list cut short). Never read as clean.
    INCOMPLETE = "INCOMPLETE"


@dataclass(frozen=True)
class Finding:
    name: str  # the CVE or advisory id that scan policies name
    severity: str
    package: str = ""  # "name version", read only for display
    uri: str = ""  # the advisory's link, read only for display


@dataclass(frozen=True)
class ScanReport:
    """One image digest's scan, as ECR reports it."""

    digest: str
    state: ScanState
    ecr_status: str  # ECR's own word for the status, for messages
    description: str = ""
    findings: tuple[Finding, ...] = ()
    completed_at: str = ""  # ISO 8601
    severity_counts: Mapping[str, int] = field(default_factory=dict)  # ECR's, for display


UNVERSIONED = frozenset({"", "null"})  # S3's VersionId for an object in an unversioned bucket


@dataclass(frozen=True)
class ModelObject:
    """The HEAD of a model object in S3."""

    etag: str
    version_id: str
    sha256: str  # from the object's ``sha256`` metadata; empty when absent
    size: int = 0  # bytes

    @property
    def identity(self) -> str:
        """What tells this object from the next one under the same key: its version, or in an
        unversioned bucket (version "", or "null" once versioning was suspended or for an object
        older than it) its ETag."""
        return self.version_id if self.version_id not in UNVERSIONED else f"etag:{self.etag}"


@dataclass(frozen=True)
class DeploymentState:
    """The parts of a live Deployment's spec and status that availability depends on."""

    image: str
    generation: int
    observed_generation: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    total_replicas: int  # status.replicas: old and new pods together
    available: bool  # the Deployment's own Available condition
    available_message: str = ""
    progress_failed: bool = False  # Progressing=False, ProgressDeadlineExceeded
    # Since when the deployment controller has been rolling a template out: Progressing=True
    # short of NewReplicaSetAvailable, the condition's lastTransitionTime (kept while it stays
    # True). None when it is not, or does not say since when. The condition carries no
    # generation: only read once ``template_rolled_out`` says the controller saw the template.
    rolling_out_since: datetime | None = None
    # The generation of the operator's last change to the Deployment (0: unknown, so the
    # current one): later generations are others' changes of the count (the autoscaler's).
    template_generation: int = 0

    @property
    def template_rolled_out(self) -> bool:
        """Every pod runs the current template: the deployment controller has seen the
        operator's last change, and no pod of an older template remains. Availability aside,
        and a scale is no rollout: the autoscaler's change of the count bumps the generation
        too, and the pods a scale-up adds run the current template, ready or not yet."""
        changed = self.template_generation or self.generation
        return (
            self.observed_generation >= changed
            and self.updated_replicas == self.total_replicas
            and (self.updated_replicas == self.replicas or changed < self.generation)
        )

    def starting(self, now: datetime, grace: timedelta) -> bool:
        """Its pods still starting, in a rollout the controller began less than ``grace`` ago."""
        return self.rolling_out_since is not None and now - self.rolling_out_since < grace

    @classmethod
    def from_live(cls, deployment: dict[str, Any], template_generation: int = 0) -> DeploymentState:
        """Read a Deployment as returned by the API server (``template_generation``: the
        generation of the operator's last change to it, if known)."""
        spec = deployment.get("spec", {})
        status = deployment.get("status", {})
        conditions = {c.get("type"): c for c in status.get("conditions", [])}
        available = conditions.get("Available", {})
        progressing = conditions.get("Progressing", {})
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        return cls(
            image=str(containers[0].get("image", "")) if containers else "",
            generation=int(deployment.get("metadata", {}).get("generation", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            replicas=int(spec.get("replicas", 1)),
            updated_replicas=int(status.get("updatedReplicas", 0)),
            ready_replicas=int(status.get("readyReplicas", 0)),
            available_replicas=int(status.get("availableReplicas", 0)),
            total_replicas=int(status.get("replicas", 0)),
            available=available.get("status") == "True",
            available_message=str(available.get("message", "")),
            progress_failed=progressing.get("reason") == "ProgressDeadlineExceeded",
            rolling_out_since=_since(progressing)
            if progressing.get("status") == "True"
            and progressing.get("reason") != "NewReplicaSetAvailable"
            else None,
            template_generation=template_generation,
        )


def _since(condition: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(condition["lastTransitionTime"]))
    except (KeyError, ValueError):
        return None
