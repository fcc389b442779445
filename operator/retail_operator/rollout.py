"""What should run, and how to describe it: the pure core of the reconcile.

``choose_target`` decides what the children run: the spec's image and model when both checks
pass, otherwise whatever ran before, so a blocked image never replaces a good one.
``running_check`` judges the image that runs against the same policy, so findings published
after it started are noticed; it never stops it. ``describe`` turns the checks and the live
Deployment into the conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

from retail_operator.conditions import (
    AVAILABLE,
    IMAGE_SCAN_PASSED,
    MODEL_AVAILABLE,
    READY,
    RUNNING_IMAGE_COMPLIANT,
    ConditionStatus,
    Verdict,
)
from retail_operator.facts import DeploymentState, ModelObject
from retail_operator.rendering import Target
from retail_operator.scanpolicy import ImageDecision
from retail_operator.spec import ModelSpec


@dataclass(frozen=True)
class Check:
    """The outcome of one check (image or model) as a condition, plus whether to look again
    soon. ``status`` is "Unknown" when the check itself could not be made."""

    status: ConditionStatus
    reason: str
    message: str
    retry_after: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "True"

    def verdict(self, condition_type: str) -> Verdict:
        return Verdict(condition_type, self.status, self.reason, self.message)


def check_model(source: ModelSpec, found: ModelObject) -> Check:
    """Compare a found object with the spec's pinned sha256, when there is one."""
    where = source.s3_uri + (f"?versionId={found.version_id}" if found.version_id else "")
    if source.sha256:
        if not found.sha256:
            return Check(
                "False",
                "ChecksumMismatch",
                f"{where} has no sha256 metadata; the spec requires {source.sha256[:12]}…",
            )
        if found.sha256 != source.sha256:
            return Check(
                "False",
                "ChecksumMismatch",
                f"{where} has sha256 {found.sha256[:12]}…, the spec requires {source.sha256[:12]}…",
            )
    note = f", sha256 {found.sha256[:12]}…" if found.sha256 else ", no sha256 metadata"
    return Check("True", "ModelFound", f"{where} (ETag {found.etag}{note})")


def running_check(decision: ImageDecision, image: str) -> Check:
    """The RunningImageCompliant condition for the image that runs, from its scan decision.

    A finding that blocks is ``False`` (NewVulnerabilities: it appeared after the rollout, or
    an exception for it ended); a scan that cannot be judged now is ``Unknown``. Either way the
    pods keep running: the message says what a person can do."""
    if decision.passed:
        return Check("True", "Compliant", f"The running image passes: {decision.message}")
    if decision.reason == "VulnerabilitiesFound":
        return Check(
            "False",
            "NewVulnerabilities",
            f"The running image {image} now has {decision.message}. It keeps serving: roll out "
            "an image with the fix, or record a scanPolicy exception (id, reason, expires).",
        )
    return Check("Unknown", decision.reason, f"The running image: {decision.message}")


def choose_target(
    desired: Target | None, image: Check, model: Check, previous: Target | None
) -> Target | None:
    """The spec's target when every check passed; else the previous one (possibly none)."""
    if desired is not None and image.passed and model.passed:
        return desired
    return previous


def _rollout_state(
    deployment: DeploymentState | None, replicas: int
) -> tuple[ConditionStatus, str, str]:
    if deployment is None:
        return "False", "NotDeployed", "No Deployment exists yet"
    if replicas == 0 and deployment.rolled_out:
        return "True", "ScaledToZero", "The Deployment is scaled to zero replicas"
    if deployment.available:
        return (
            "True",
            "MinimumReplicasAvailable",
            f"{deployment.available_replicas}/{deployment.replicas} replicas available",
        )
    if deployment.progress_failed:
        return "False", "ProgressDeadlineExceeded", deployment.available_message
    return (
        "False",
        "MinimumReplicasUnavailable",
        f"{deployment.available_replicas}/{deployment.replicas} replicas available",
    )


def describe(
    *,
    image: Check,
    model: Check,
    desired_image: str | None,
    deployed: Target | None,
    deployment: DeploymentState | None,
    replicas: int,
    running: Check | None = None,
) -> list[Verdict]:
    """The conditions. Ready is the summary: the spec is fully rolled out, available, and what
    runs still passes the scan policy. RunningImageCompliant appears once something runs."""
    available_status, available_reason, available_message = _rollout_state(deployment, replicas)
    verdicts = [
        image.verdict(IMAGE_SCAN_PASSED),
        model.verdict(MODEL_AVAILABLE),
        Verdict(AVAILABLE, available_status, available_reason, available_message),
    ]
    if running is not None:
        verdicts.append(running.verdict(RUNNING_IMAGE_COMPLIANT))
    serving = f"; still serving {deployed.image}" if deployed is not None else ""
    runs_the_spec = deployed is not None and deployed.image == desired_image
    if running is not None and running.status == "False" and runs_the_spec:
        ready = Verdict(READY, "False", running.reason, running.message)
    elif not image.passed:
        ready = Verdict(
            READY, "False", image.reason, f"Image not rolled out: {image.message}{serving}"
        )
    elif not model.passed:
        ready = Verdict(
            READY, "False", model.reason, f"Model not rolled out: {model.message}{serving}"
        )
    elif deployment is None or deployed is None or deployed.image != desired_image:
        ready = Verdict(READY, "False", "RolloutPending", f"Rolling out {desired_image}")
    elif deployment.image != desired_image or not deployment.rolled_out:
        ready = Verdict(
            READY,
            "False",
            "RolloutInProgress",
            f"{deployment.updated_replicas}/{deployment.replicas} replicas updated, "
            f"{deployment.available_replicas} available",
        )
    elif available_status != "True":
        ready = Verdict(READY, "False", available_reason, available_message)
    else:
        ready = Verdict(READY, "True", "Ready", f"{desired_image} is serving {model.message}")
    verdicts.append(ready)
    return verdicts
