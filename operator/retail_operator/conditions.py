"""Status conditions in the metav1.Condition shape, and how they change without flapping.

``merge`` keeps a condition's ``lastTransitionTime`` unless its status changed, so repeated
reconciles of an unchanged world leave the status byte-for-byte the same; ``transitions`` says
which conditions changed, and ``announcements`` which of those changes become Kubernetes Events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypedDict

ConditionStatus = Literal["True", "False", "Unknown"]

IMAGE_SCAN_PASSED = "ImageScanPassed"  # the spec's image may roll out
RUNNING_IMAGE_COMPLIANT = "RunningImageCompliant"  # the image that runs still passes the policy
MODEL_AVAILABLE = "ModelAvailable"
MODEL_ROLLED_OUT = "ModelRolledOut"  # a canary rollout's state; its own Events (progressive)
AVAILABLE = "Available"
READY = "Ready"
ORDER = (
    IMAGE_SCAN_PASSED,
    RUNNING_IMAGE_COMPLIANT,
    MODEL_AVAILABLE,
    MODEL_ROLLED_OUT,
    AVAILABLE,
    READY,
)
# Not-yet-True states that are progress, not problems: announced as Normal, not Warning.
PROGRESS_REASONS = frozenset(
    {"RolloutPending", "RolloutInProgress", "ScanInProgress", "ScanPending"}
)


class Condition(TypedDict):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


@dataclass(frozen=True)
class Announcement:
    """A Kubernetes Event to post about a RetailModel."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """A condition's desired content, before timestamps."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    existing: Iterable[Condition],
    verdicts: Sequence[Verdict],
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """The new conditions list: ``verdicts`` stamped, keeping unchanged transition times."""
    previous = {c["type"]: c for c in existing}
    merged: list[Condition] = []
    for verdict in sorted(verdicts, key=lambda v: ORDER.index(v.type)):
        old = previous.get(verdict.type)
        changed = old is None or old["status"] != verdict.status
        merged.append(
            Condition(
                type=verdict.type,
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
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
    announced = []  # ModelRolledOut's transitions carry figures: progressive posts its own
    for changed in transitions(existing, merged):
        good = changed["status"] == "True"
        if changed["type"] in (AVAILABLE, MODEL_ROLLED_OUT) or (good and changed["type"] != READY):
            continue
        kind: Literal["Normal", "Warning"] = (
            "Normal" if good or changed["reason"] in PROGRESS_REASONS else "Warning"
        )
        message = f"{changed['type']}: {changed['message']}"
        announced.append(Announcement(kind, changed["reason"], message))
    return announced
