"""A RetailModel's status, typed: what the operator writes, and the few things it reads back.

The status is output. Nothing in it decides what runs: the image to keep running comes from
the live Deployment the RetailModel owns, the canary's memory from the stable ConfigMap it
owns. It is read back only to keep its own story straight: a condition's
``lastTransitionTime`` survives a reconcile that does not change it, and a transition is
announced once. ``parse`` reads a body's status once, keeping only well-formed parts: a
status someone else wrote can make a transition time start again, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

ConditionStatus = Literal["True", "False", "Unknown"]
_STATUSES = ("True", "False", "Unknown")


class Condition(TypedDict):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class ImageStatus(TypedDict):
    tag: str
    digest: str
    scanStatus: str
    findingCounts: dict[str, int]
    scanCompletedAt: str


class ModelStatus(TypedDict):
    s3Uri: str
    etag: str
    versionId: str
    sha256: str


class ModelSource(TypedDict):
    s3Uri: str
    versionId: str
    sha256: str


class Version(TypedDict):
    """One version of a canary's model object."""

    versionId: str
    sha256: str
    modelVersion: str


class Rejection(TypedDict):
    versionId: str
    sha256: str
    generation: int


class RolloutStatus(TypedDict):
    """``status.rollout``: the canary rollout of the model object."""

    phase: str
    stable: Version
    candidate: NotRequired[Version]
    figures: NotRequired[dict[str, Any]]
    startedAt: NotRequired[str]
    rejected: NotRequired[list[Rejection]]


class ReplicaStatus(TypedDict):
    desired: int  # the stable Deployment's replicas (the autoscaler's choice, with one)
    available: int


class RetailModelStatus(TypedDict, total=False):
    observedGeneration: int
    conditions: list[Condition]
    image: ImageStatus
    model: ModelStatus
    deployedImage: str
    deployedModel: ModelSource
    rollout: RolloutStatus
    replicas: ReplicaStatus
    drift: dict[str, Any]  # the last drift window judged (retail_operator.drift.watch)


def _condition(raw: Any) -> Condition | None:
    if not isinstance(raw, Mapping):
        return None
    status = raw.get("status")
    fields = (raw.get(k) for k in ("type", "reason", "message", "lastTransitionTime"))
    type_, reason, message, since = fields
    if status not in _STATUSES or not all(
        isinstance(v, str) for v in (type_, reason, message, since)
    ):
        return None
    generation = raw.get("observedGeneration", 0)
    return Condition(
        type=str(type_),
        status=status,
        reason=str(reason),
        message=str(message),
        lastTransitionTime=str(since),
        observedGeneration=generation if isinstance(generation, int) else 0,
    )


def parse(raw: Any) -> RetailModelStatus:
    """The parts of a body's status the operator reads back: its conditions and the generation
    they speak for (everything else it writes afresh)."""
    status = RetailModelStatus()
    if not isinstance(raw, Mapping):
        return status
    generation = raw.get("observedGeneration")
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    conditions = raw.get("conditions")
    if isinstance(conditions, list):
        parsed = [c for c in map(_condition, conditions) if c is not None]
        status["conditions"] = parsed
    drift = raw.get("drift")
    if isinstance(drift, Mapping):  # kept, as last judged, until the next window is
        status["drift"] = dict(drift)
    return status


def condition(status: RetailModelStatus, type_: str) -> Condition | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def has_reason(status: RetailModelStatus, type_: str, reason: str) -> bool:
    found = condition(status, type_)
    return found is not None and found["reason"] == reason
