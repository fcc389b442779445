"""Status conditions: what each says, and how they change without flapping. Pure.

A ``Check`` is one condition's content (status, reason, message) plus how soon to look again.
``describe`` turns a reconcile's checks and the live Deployment into the conditions, with
Ready as the summary. ``merge`` keeps a condition's ``lastTransitionTime`` unless its status
changed, so repeated reconciles of an unchanged world leave the status byte-for-byte the same;
``announcements`` says which changes become Kubernetes Events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from retail_operator.errors import OperatorError, TemporaryError
from retail_operator.facts import DeploymentState
from retail_operator.status import Condition, ConditionStatus

IMAGE_SCAN_PASSED = "ImageScanPassed"  # the spec's image may roll out
# A trusted key signed the spec's image digest (only when a RetailModelPolicy or the spec lists
# image keys).
IMAGE_SIGNATURE_VERIFIED = "ImageSignatureVerified"
RUNNING_IMAGE_COMPLIANT = "RunningImageCompliant"  # the image that runs still passes the policy
MODEL_AVAILABLE = "ModelAvailable"
# A trusted key signed the model (only when a RetailModelPolicy or the spec lists keys).
MODEL_SIGNATURE_VERIFIED = "ModelSignatureVerified"
MODEL_ROLLED_OUT = "ModelRolledOut"  # a canary rollout's state; its own Events (canary.machine)
AVAILABLE = "Available"
READY = "Ready"
# The stable model's inputs or predictions moved from its hold-out's (retail_operator.drift);
# True is the problem. Never part of Ready: a stale model still serves. Its own Events.
DRIFT = "Drift"
ORDER = (
    IMAGE_SCAN_PASSED,
    IMAGE_SIGNATURE_VERIFIED,
    RUNNING_IMAGE_COMPLIANT,
    MODEL_AVAILABLE,
    MODEL_SIGNATURE_VERIFIED,
    MODEL_ROLLED_OUT,
    AVAILABLE,
    READY,
    DRIFT,
)
# How long pods not yet available in a rollout (the template rolled out, the deployment
# controller still progressing) are progress, a Normal Event, before Ready says
# MinimumReplicasUnavailable, a Warning: a first rollout has nothing serving before them, and
# pods that crash or never get ready are a problem after a start's worth of time, not after
# the Deployment's progress deadline (600 s, and restarted by each pod that gets ready).
STARTING_GRACE = timedelta(minutes=2)
DELETING = "Deleting"  # Ready's reason while a RetailModel is on its way out
# Not-yet-True states that are progress, not problems: announced as Normal, not Warning.
PROGRESS_REASONS = frozenset(
    {"RolloutPending", "RolloutInProgress", "ScanInProgress", "ScanPending", DELETING}
)


@dataclass(frozen=True)
class Check:
    """One condition's content, plus whether to look again soon. ``status`` is "Unknown" when
    the check itself could not be made."""

    status: ConditionStatus
    reason: str
    message: str
    retry_after: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "True"

    @classmethod
    def failed(cls, error: OperatorError) -> Check:
        """A check that raised: Unknown (and soon again) when temporary, else False."""
        if isinstance(error, TemporaryError):
            return cls("Unknown", error.reason, error.message, error.retry_after)
        return cls("False", error.reason, error.message)

    @classmethod
    def from_condition(cls, condition: Condition | None) -> Check:
        if condition is None:
            return cls("Unknown", "NotChecked", "not checked yet")
        return cls(condition["status"], condition["reason"], condition["message"])


Checks = Mapping[str, Check]  # condition type → its check


@dataclass(frozen=True)
class Announcement:
    """A Kubernetes Event to post about a RetailModel."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rollout_state(deployment: DeploymentState | None, minimum: int) -> Check:
    """Available: at least ``minimum`` replicas available (all of them for a fixed count; the
    autoscaler's minimum while it scales, so a scale-up is not an outage)."""
    if deployment is None:
        return Check("False", "NotDeployed", "No Deployment exists yet")
    if minimum == 0 and deployment.replicas == 0 and deployment.template_rolled_out:
        return Check("True", "ScaledToZero", "The Deployment is scaled to zero replicas")
    counted = f"{deployment.available_replicas}/{deployment.replicas} replicas available"
    if deployment.progress_failed:
        return Check("False", "ProgressDeadlineExceeded", deployment.available_message)
    if minimum > 0 and deployment.available_replicas >= minimum:
        return Check("True", "MinimumReplicasAvailable", counted)
    return Check("False", "MinimumReplicasUnavailable", f"{counted} (at least {minimum} wanted)")


def describe(
    *,
    image: Check,
    model: Check,
    desired_image: str | None,
    deployed_image: str | None,
    deployment: DeploymentState | None,
    minimum: int,
    running: Check | None = None,
    signature: Check | None = None,
    image_signature: Check | None = None,
    now: datetime,
) -> dict[str, Check]:
    """The conditions. Ready is the summary: the spec is fully rolled out (every pod on the
    current template), at least ``minimum`` replicas are available, and what runs still passes
    the scan policy. RunningImageCompliant appears once something runs, ModelSignatureVerified
    when signed models are required, ImageSignatureVerified when signed images are."""
    available = _rollout_state(deployment, minimum)
    checks = {IMAGE_SCAN_PASSED: image, MODEL_AVAILABLE: model, AVAILABLE: available}
    if running is not None:
        checks[RUNNING_IMAGE_COMPLIANT] = running
    if signature is not None:
        checks[MODEL_SIGNATURE_VERIFIED] = signature
    if image_signature is not None:
        checks[IMAGE_SIGNATURE_VERIFIED] = image_signature
    serving = f"; still serving {deployed_image}" if deployed_image else ""
    runs_the_spec = deployed_image is not None and deployed_image == desired_image
    if running is not None and running.status == "False" and runs_the_spec:
        ready = Check("False", running.reason, running.message)
    elif not image.passed:
        ready = Check("False", image.reason, f"Image not rolled out: {image.message}{serving}")
    elif image_signature is not None and not image_signature.passed:
        ready = Check(
            "False",
            image_signature.reason,
            f"Image not rolled out: {image_signature.message}{serving}",
        )
    elif not model.passed:
        ready = Check("False", model.reason, f"Model not rolled out: {model.message}{serving}")
    elif signature is not None and not signature.passed:
        ready = Check(
            "False", signature.reason, f"Model not rolled out: {signature.message}{serving}"
        )
    elif deployment is None or deployed_image is None or deployed_image != desired_image:
        ready = Check("False", "RolloutPending", f"Rolling out {desired_image}")
    elif (
        deployment.image != desired_image
        or not deployment.template_rolled_out
        or (not available.passed and deployment.starting(now, STARTING_GRACE))
    ):
        ready = Check(
            "False",
            "RolloutInProgress",
            f"{deployment.updated_replicas}/{deployment.replicas} replicas updated, "
            f"{deployment.available_replicas} available",
        )
    elif not available.passed:
        ready = Check("False", available.reason, available.message)
    else:
        ready = Check("True", "Ready", f"{desired_image} is serving {model.message}")
    checks[READY] = ready
    return checks


def refused(check: Check, *, serving: str | None) -> dict[str, Check]:
    """The conditions of a RetailModel whose spec cannot be carried out at all (SpecInvalid,
    NameConflict): Ready says why, and what still runs keeps running."""
    still = f"; still serving {serving}" if serving else ""
    return {READY: Check(check.status, check.reason, f"{check.message}{still}")}


def merge(
    existing: Iterable[Condition],
    checks: Checks,
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """The new conditions list: ``checks`` stamped, keeping unchanged transition times."""
    previous = {c["type"]: c for c in existing}
    merged: list[Condition] = []
    for type_ in sorted(checks, key=ORDER.index):
        check = checks[type_]
        old = previous.get(type_)
        changed = old is None or old["status"] != check.status
        merged.append(
            Condition(
                type=type_,
                status=check.status,
                reason=check.reason,
                message=check.message,
                lastTransitionTime=now if changed or old is None else old["lastTransitionTime"],
                observedGeneration=generation,
            )
        )
    return merged


def transitions(existing: Iterable[Condition], merged: Iterable[Condition]) -> list[Condition]:
    """Conditions whose status or reason differ from before: each deserves an Event."""
    previous = {c["type"]: (c["status"], c["reason"]) for c in existing}
    return [c for c in merged if previous.get(c["type"]) != (c["status"], c["reason"])]


def announcements(existing: Iterable[Condition], merged: Iterable[Condition]) -> list[Announcement]:
    """The Events a change of conditions deserves.

    Every problem is a Warning; progress and the summary (Ready) are Normal. A check that
    passes (ScanClean, ModelFound) or a Deployment becoming available is not announced on its
    own: Ready's transition tells that story, and ``kubectl describe`` still shows every
    condition. Each Event is an API write: five per RetailModel took about a quarter of the
    control plane's CPU while a thousand rolled out (bench/RESULTS.md).
    """
    announced = []  # ModelRolledOut's and Drift's transitions carry figures: posted by their own
    for changed in transitions(existing, merged):
        good = changed["status"] == "True"
        own = (AVAILABLE, MODEL_ROLLED_OUT, DRIFT)
        if changed["type"] in own or (good and changed["type"] != READY):
            continue
        kind: Literal["Normal", "Warning"] = (
            "Normal" if good or changed["reason"] in PROGRESS_REASONS else "Warning"
        )
        message = f"{changed['type']}: {changed['message']}"
        announced.append(Announcement(kind, changed["reason"], message))
    return announced
