"""The canary's state machine: what the stable pods serve, whether a candidate runs beside
them, and what to do next. Pure: it returns a ``Plan`` that the reconcile carries out.

With ``spec.rollout.strategy: Canary`` (and no ``versionId`` pinned in the spec) each full
reconcile asks ``plan``, given the latest object in S3 and the ``Memory`` recovered from the
stable ConfigMap the RetailModel owns:

* the first version seen becomes the stable one, with no analysis;
* the stable version again: the stable pods keep serving it (Stable, or Promoted after a
  promotion);
* a version rolled back before, or *the same bytes* under a new version id (by sha256): refused
  at once, without serving a request;
* a version without sha256 metadata cannot be told apart from another in the pods' metrics:
  refused (the canary binds its evidence to the candidate's sha256);
* otherwise a candidate: the canary runs pinned to it (its pod template names it, so a new
  candidate means new pods), and the reconcile gathers both groups' evidence into the
  analysis ``Window`` and asks ``conclude``, which asks the judge (``analysis``): wait, promote
  (the stable pods are pinned to the candidate and hot-reload it; the canary goes) or roll back
  (the canary goes; the candidate is remembered as rejected, by version and by content).

What must outlive a lost status (the stable version, promotion, the rejected versions) is the
``Memory``, written on the stable ConfigMap with every apply; the status says what happened
and is never read back. The analysis window lives in memory only: a restart or a new leader
starts it again, which can delay a verdict, never hasten one. A bucket without versioning
cannot pin anything: ``VersioningRequired`` says so, and the pods follow the latest object as
with the Immediate strategy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from retail_operator.canary.analysis import DEADLINE, Decision, Figures, Verdict, judge
from retail_operator.canary.evidence import GroupWindow
from retail_operator.conditions import Announcement, Check
from retail_operator.facts import UNVERSIONED, ModelObject
from retail_operator.rendering import Target
from retail_operator.spec import Analysis, RetailModelSpec
from retail_operator.status import Rejection, RolloutStatus, Version

MAX_REJECTED = 20  # versions remembered as rejected, newest kept


class Phase(StrEnum):
    """``status.rollout.phase``, and the ModelRolledOut condition's reason in that phase."""

    STABLE = "Stable"
    ANALYZING = "Analyzing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


# ModelRolledOut reasons beyond the phases.
VERSIONING_REQUIRED = "VersioningRequired"
INCONCLUSIVE = "Inconclusive"  # no verdict by the deadline: rolled back
SHA256_REQUIRED = "Sha256Required"  # a candidate with no sha256 metadata: refused
REJECTED_BEFORE = "RejectedBefore"  # the same bytes as a version rolled back: refused


@dataclass(frozen=True)
class ObjectVersion:
    """One version of the model object: its S3 version id, sha256, and the model version the
    pods report for it (known once a pod served it)."""

    version_id: str
    sha256: str
    model_version: str = ""

    def status(self) -> Version:
        return Version(
            versionId=self.version_id, sha256=self.sha256, modelVersion=self.model_version
        )


@dataclass(frozen=True)
class Memory:
    """What the canary must not forget: the stable version, whether it came by promotion, and
    the versions rolled back (with the generation of the spec that saw them rolled back)."""

    stable: ObjectVersion | None = None
    promoted: bool = False
    rejected: tuple[Rejection, ...] = ()

    def to_json(self) -> str:
        document: dict[str, Any] = {"promoted": self.promoted, "rejected": list(self.rejected)}
        if self.stable is not None:
            document["stable"] = self.stable.status()
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Memory | None:
        """The memory written by ``to_json``; None when it is not that (edited, truncated)."""
        try:
            document = json.loads(text)
            stable = document.get("stable")
            rejected = tuple(
                Rejection(
                    versionId=str(r["versionId"]),
                    sha256=str(r["sha256"]),
                    generation=int(r["generation"]),
                )
                for r in document.get("rejected", [])
            )
            return cls(
                stable=ObjectVersion(
                    str(stable["versionId"]), str(stable["sha256"]), str(stable["modelVersion"])
                )
                if stable
                else None,
                promoted=bool(document.get("promoted", False)),
                rejected=rejected[-MAX_REJECTED:],
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def rejection_of(self, found: ModelObject) -> Rejection | None:
        """The rejection that covers ``found``: the same version, or the same bytes."""
        return next(
            (
                r
                for r in reversed(self.rejected)
                if r["versionId"] == found.version_id
                or (found.sha256 and r["sha256"] == found.sha256)
            ),
            None,
        )

    def rejecting(self, version: ObjectVersion, generation: int) -> Memory:
        rejection = Rejection(
            versionId=version.version_id, sha256=version.sha256, generation=generation
        )
        return replace(self, rejected=(*self.rejected, rejection)[-MAX_REJECTED:])


@dataclass
class Window:
    """An analysis under way: the candidate and both groups' evidence so far."""

    candidate: ObjectVersion
    started: float  # monotonic
    started_at: str  # RFC 3339, for the status
    stable: GroupWindow
    canary: GroupWindow

    @classmethod
    def open(
        cls, candidate: ObjectVersion, stable: ObjectVersion, *, now: float, now_text: str
    ) -> Window:
        return cls(
            candidate,
            now,
            now_text,
            GroupWindow(stable.sha256),
            GroupWindow(candidate.sha256, watch_health=True),
        )


@dataclass(frozen=True)
class Plan:
    """What one step decided, for the reconcile to carry out."""

    stable: Target  # what the stable children run
    rollout: RolloutStatus  # status.rollout
    check: Check  # the ModelRolledOut condition
    memory: Memory | None = None  # written on the stable ConfigMap; None: nothing to keep
    canary: Target | None = None  # the canary's target; None: no canary may run
    analyse: ObjectVersion | None = None  # gather evidence on this candidate, then conclude
    announcements: tuple[Announcement, ...] = ()
    retry_after: float | None = None
    verdict: Verdict | None = field(default=None, compare=False)  # the judge's, when it spoke


def pinned(target: Target, version: ObjectVersion) -> Target:
    """``target`` with its model pinned to one version of the object and its bytes."""
    model = target.model.model_copy(
        update={"version_id": version.version_id, "sha256": version.sha256}
    )
    return Target(target.image, model)


def _rollout(phase: Phase, memory: Memory, candidate: ObjectVersion | None = None) -> RolloutStatus:
    assert memory.stable is not None
    status = RolloutStatus(phase=phase.value, stable=memory.stable.status())
    if candidate is not None:
        status["candidate"] = candidate.status()
    if memory.rejected:
        status["rejected"] = list(memory.rejected)
    return status


def plan(
    *,
    spec: RetailModelSpec,
    generation: int,
    target: Target,
    found: ModelObject,
    memory: Memory,
    window: Window | None,
    previous_reason: str,
) -> Plan:
    """The step for the latest object ``found``, before any evidence is read."""
    latest = found.version_id
    if latest in UNVERSIONED:
        message = (
            f"S3 bucket {spec.model.location.bucket} is not versioned (the object has no "
            "VersionId): the Canary strategy pins the stable pods to a version and cannot; the "
            "pods follow the latest object as with Immediate. Enable versioning on the bucket."
        )
        said = previous_reason == VERSIONING_REQUIRED
        return Plan(
            stable=target,
            rollout=RolloutStatus(
                phase=Phase.STABLE.value, stable=ObjectVersion("", found.sha256).status()
            ),
            check=Check("False", VERSIONING_REQUIRED, message),
            announcements=() if said else (Announcement("Warning", VERSIONING_REQUIRED, message),),
        )

    if memory.stable is None:  # the first version seen becomes the stable one
        memory = Memory(stable=ObjectVersion(latest, found.sha256))
    stable = memory.stable
    assert stable is not None

    if latest == stable.version_id:
        phase = Phase.PROMOTED if memory.promoted else Phase.STABLE
        return Plan(
            stable=pinned(target, stable),
            rollout=_rollout(phase, memory),
            check=Check("True", phase.value, f"The stable pods serve version {latest}"),
            memory=memory,
        )

    rejection = memory.rejection_of(found)
    if rejection is not None:
        return _refused_again(target, memory, found, rejection, generation)

    candidate = ObjectVersion(latest, found.sha256)
    if not found.sha256:
        message = (
            f"Version {latest} has no sha256 metadata: the canary cannot tell its answers from "
            f"another model's, so it is not tried; the stable pods keep version "
            f"{stable.version_id}. Upload it with `retailctl model push`, which records it."
        )
        memory = memory.rejecting(candidate, generation)
        return Plan(
            stable=pinned(target, stable),
            rollout=_rollout(Phase.ROLLED_BACK, memory, candidate),
            check=Check("False", SHA256_REQUIRED, message),
            memory=memory,
            announcements=(Announcement("Warning", SHA256_REQUIRED, message),),
        )

    policy = spec.rollout.canary.analysis
    announcements: tuple[Announcement, ...] = ()
    if window is None or window.candidate.version_id != latest:
        announcements = (
            Announcement(
                "Normal",
                Phase.ANALYZING.value,
                f"Analysing version {latest} on {spec.rollout.canary.replicas} canary pod(s) "
                f"beside the stable version {stable.version_id} for at least "
                f"{policy.duration_seconds} s and {policy.min_requests} requests, at most "
                f"{policy.deadline_seconds} s",
            ),
        )
    return Plan(
        stable=pinned(target, stable),
        rollout=_rollout(Phase.ANALYZING, memory, candidate),
        check=Check("False", Phase.ANALYZING.value, f"Version {latest}: starting the analysis"),
        memory=memory,
        canary=pinned(target, candidate),
        analyse=candidate,
        announcements=announcements,
    )


def _refused_again(
    target: Target, memory: Memory, found: ModelObject, rejection: Rejection, generation: int
) -> Plan:
    """A version rolled back before, or the same bytes again: no canary, no traffic.

    RolledBack (and Degraded in Argo CD) for the generation that rolled it back; a later spec
    is the acknowledgement: Stable, the version still not retried."""
    stable = memory.stable
    assert stable is not None
    latest = found.version_id
    if rejection["versionId"] == latest:
        what = f"version {latest} was rolled back"
        reason = Phase.ROLLED_BACK.value
    else:
        what = (
            f"version {latest} has the same bytes (sha256 {found.sha256[:12]}…) as version "
            f"{rejection['versionId']}, which was rolled back"
        )
        reason = REJECTED_BEFORE
    acknowledged = rejection["generation"] != generation
    if acknowledged:
        check = Check(
            "True",
            Phase.STABLE.value,
            f"The stable pods serve version {stable.version_id}; {what} under an earlier spec "
            "and is not tried again until the object changes",
        )
    else:
        check = Check(
            "False",
            reason,
            f"The stable pods keep version {stable.version_id}; {what}; it is not tried again "
            "until the object changes",
        )
    phase = Phase.STABLE if acknowledged else Phase.ROLLED_BACK
    return Plan(
        stable=pinned(target, stable),
        rollout=_rollout(phase, memory),
        check=check,
        memory=memory,
    )


def _figures(figures: Figures, policy: Analysis) -> dict[str, Any]:
    measured = {
        "requests": figures.requests,
        "stableRequests": figures.stable_requests,
        "errorRate": figures.error_rate,
        "latencyRatio": figures.latency_ratio,
        "predictionShift": figures.prediction_shift,
        "summary": figures.summary(policy),
    }
    return {
        name: round(value, 6) if isinstance(value, float) else value
        for name, value in measured.items()
        if value is not None
    }


def conclude(
    step: Plan,
    *,
    spec: RetailModelSpec,
    generation: int,
    target: Target,
    window: Window,
    now: float,
    poll_seconds: float,
) -> Plan:
    """The step once the window holds the latest evidence: the judge's verdict, carried out."""
    assert step.memory is not None and step.memory.stable is not None
    stable = replace(
        step.memory.stable,
        model_version=window.stable.model_version or step.memory.stable.model_version,
    )
    memory = replace(step.memory, stable=stable)
    policy = spec.rollout.canary.analysis
    verdict = judge(
        window.stable.evidence(), window.canary.evidence(), policy, now - window.started
    )
    candidate = replace(window.candidate, model_version=window.canary.model_version)
    latest = candidate.version_id

    def rollout(phase: Phase, remembered: Memory) -> RolloutStatus:
        status = _rollout(phase, remembered, candidate)
        status["figures"] = _figures(verdict.figures, policy)
        status["startedAt"] = window.started_at
        return status

    if verdict.decision is Decision.WAIT:
        return replace(
            step,
            rollout=rollout(Phase.ANALYZING, memory),
            check=Check("False", Phase.ANALYZING.value, f"Version {latest}: {verdict.message}"),
            memory=memory,
            retry_after=poll_seconds,
            verdict=verdict,
        )
    if verdict.decision is Decision.PROMOTE:
        message = f"Version {latest} promoted: {verdict.message}"
        memory = Memory(stable=candidate, promoted=True, rejected=memory.rejected)
        return Plan(
            stable=pinned(target, candidate),
            rollout=rollout(Phase.PROMOTED, memory),
            check=Check("True", Phase.PROMOTED.value, message),
            memory=memory,
            announcements=(Announcement("Normal", Phase.PROMOTED.value, message),),
            verdict=verdict,
        )
    if verdict.rule == DEADLINE:
        reason = INCONCLUSIVE
        message = f"Version {latest} rolled back, inconclusive: {verdict.message}"
    else:
        reason = Phase.ROLLED_BACK.value
        message = f"Version {latest} rolled back by the {verdict.rule} rule: {verdict.message}"
    message += f"; the stable pods keep version {stable.version_id}"
    memory = memory.rejecting(candidate, generation)
    return Plan(
        stable=pinned(target, stable),
        rollout=rollout(Phase.ROLLED_BACK, memory),
        check=Check("False", reason, message),
        memory=memory,
        announcements=(Announcement("Warning", reason, message),),
        verdict=verdict,
    )


def recover(config_map: Mapping[str, Any] | None, annotation: str, pin: Target | None) -> Memory:
    """The memory kept on the stable ConfigMap (``annotation``); failing that, the version the
    ConfigMap pins the stable pods to (``pin``, read from its model-source document)."""
    if config_map is not None:
        text = (config_map.get("metadata", {}).get("annotations") or {}).get(annotation)
        if isinstance(text, str):
            remembered = Memory.from_json(text)
            if remembered is not None:
                return remembered
    if pin is not None and pin.model.version_id not in UNVERSIONED:
        return Memory(stable=ObjectVersion(pin.model.version_id, pin.model.sha256))
    return Memory()
