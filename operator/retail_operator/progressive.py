"""Progressive model delivery: a new model object earns its traffic, or is rolled back.

With ``spec.rollout.strategy: Canary`` (and no ``versionId`` pinned in the spec) each full
reconcile takes one ``CanaryRollout.step``:

* the stable pods stay pinned to the object version they serve (``status.rollout.stable``),
  so they do not hot-reload a new upload;
* a new version of the object becomes the candidate: a canary Deployment beside the stable
  one, pinned to it, behind the same Service (``rendering.render_canary``);
* both groups' ``/metrics`` are read when the analysis starts and on every step after
  (``podmetrics``), and ``canary.judge`` decides: wait, promote (the stable pods are pinned
  to the candidate and hot-reload it; the canary goes) or roll back (the canary goes, the
  stable pods keep their version, the candidate is remembered as rejected and not tried
  again until the object changes).

The first scrape of an analysis is kept in memory: an operator restart (or a new leader)
starts the analysis window again, which can only delay a verdict, never hasten one. A
bucket without versioning cannot pin anything: ``VersioningRequired`` says so, and the pods
follow the latest object as with the Immediate strategy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retail_operator import rendering
from retail_operator.canary import analysis
from retail_operator.canary.evidence import GroupWindow
from retail_operator.conditions import MODEL_ROLLED_OUT, ConditionStatus, Verdict, now_rfc3339
from retail_operator.facts import ModelObject
from retail_operator.kube import KubeApi
from retail_operator.podmetrics import MetricsReader, Scrape
from retail_operator.rendering import Owner, Target
from retail_operator.spec import RetailModelSpec

# (involved object body, event type, reason, message)
EventSink = Callable[[Mapping[str, Any], str, str, str], None]
Key = tuple[str, str]

STABLE = "Stable"
ANALYZING = "Analyzing"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
VERSIONING_REQUIRED = "VersioningRequired"
UNVERSIONED = frozenset({"", "null"})  # S3's VersionId for an object in an unversioned bucket


@dataclass(frozen=True)
class Step:
    """What one step decided: what the stable children run, ``status.rollout``, the
    ModelRolledOut condition and when to look again."""

    stable: Target
    status: dict[str, Any]
    verdict: Verdict
    retry_after: float | None = None


@dataclass(frozen=True)
class _Window:
    """An analysis under way: the candidate and both groups' evidence so far."""

    version_id: str
    started: float  # monotonic
    started_at: str  # RFC 3339, for the status
    stable: GroupWindow
    canary: GroupWindow


def _version(version_id: str, sha256: str, model_version: str) -> dict[str, str]:
    return {"versionId": version_id, "sha256": sha256, "modelVersion": model_version}


def _figures(figures: analysis.Figures, policy_summary: str) -> dict[str, Any]:
    measured = {
        "requests": figures.requests,
        "stableRequests": figures.stable_requests,
        "errorRate": figures.error_rate,
        "latencyRatio": figures.latency_ratio,
        "predictionShift": figures.prediction_shift,
        "summary": policy_summary,
    }
    return {
        name: round(value, 6) if isinstance(value, float) else value
        for name, value in measured.items()
        if value is not None
    }


def _condition(status: ConditionStatus, reason: str, message: str) -> Verdict:
    return Verdict(MODEL_ROLLED_OUT, status, reason, message)


@dataclass
class CanaryRollout:
    kube: KubeApi
    pods: MetricsReader
    emit: EventSink
    poll_seconds: float = 5.0
    _windows: dict[Key, _Window] = field(default_factory=dict)

    def forget(self, key: Key) -> None:
        self._windows.pop(key, None)

    async def clear(self, owner: Owner, state: Mapping[str, Any]) -> None:
        """Leaving the Canary strategy (or pinning a version): no canary may stay behind."""
        self.forget((owner.namespace, owner.name))
        if state.get("phase") == ANALYZING:
            await self._remove_canary(owner)

    async def _remove_canary(self, owner: Owner) -> None:
        track = rendering.CANARY_TRACK
        await self.kube.delete(
            "apps/v1", "Deployment", owner.namespace, track.deployment_name(owner)
        )
        await self.kube.delete("v1", "ConfigMap", owner.namespace, track.config_map_name(owner))

    async def _scrape(self, owner: Owner) -> tuple[Scrape, Scrape]:
        stable, candidate = await asyncio.gather(
            self.pods.sample(owner.namespace, rendering.pod_selector(owner, canary_pods=False)),
            self.pods.sample(owner.namespace, rendering.pod_selector(owner, canary_pods=True)),
        )
        return stable, candidate

    async def step(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        generation: int,
        spec: RetailModelSpec,
        target: Target,
        found: ModelObject,
        status: Mapping[str, Any],
    ) -> Step:
        """One step of the canary state machine for the object ``found`` (the latest)."""
        state: dict[str, Any] = dict(status.get("rollout") or {})
        was_analyzing = state.get("phase") == ANALYZING
        latest = found.version_id

        if latest in UNVERSIONED:
            self.forget((owner.namespace, owner.name))
            if was_analyzing:
                await self._remove_canary(owner)
            bucket = spec.model.location.bucket
            message = (
                f"S3 bucket {bucket} is not versioned (the object has no VersionId): the Canary "
                "strategy pins the stable pods to a version and cannot; the pods follow the "
                "latest object as with Immediate. Enable versioning on the bucket."
            )
            if not _had_reason(status, VERSIONING_REQUIRED):
                self.emit(body, "Warning", VERSIONING_REQUIRED, message)
            rollout = {"phase": STABLE, "stable": _version("", found.sha256, "")}
            return Step(target, rollout, _condition("False", VERSIONING_REQUIRED, message))

        stable = dict(state.get("stable") or {})
        if not stable.get("versionId"):  # the first version seen becomes the stable one
            stable = _version(latest, found.sha256, "")
        state["stable"] = stable

        def pinned_to(version_id: str) -> Target:
            return Target(target.image, target.model.model_copy(update={"version_id": version_id}))

        if latest == stable["versionId"]:
            if was_analyzing:  # the object went back to the stable version mid-analysis
                await self._remove_canary(owner)
            self.forget((owner.namespace, owner.name))
            state["phase"] = PROMOTED if state.get("phase") == PROMOTED else STABLE
            message = f"The stable pods serve version {latest}"
            return Step(pinned_to(latest), state, _condition("True", state["phase"], message))

        if latest == state.get("rejectedVersionId"):
            # RolledBack (and Degraded in Argo CD) for the generation that rolled it back; a
            # later spec is the acknowledgement: Stable, the version still not retried.
            acknowledged = state.get("rejectedGeneration") != generation
            state["phase"] = STABLE if acknowledged else ROLLED_BACK
            rejected = (
                f"version {latest} was rolled back ({state.get('figures', {}).get('summary', '')})"
            )
            if not acknowledged:
                verdict = _condition(
                    "False",
                    ROLLED_BACK,
                    f"The stable pods keep version {stable['versionId']}; {rejected}; it is not "
                    "tried again until the object changes",
                )
            else:
                verdict = _condition(
                    "True",
                    STABLE,
                    f"The stable pods serve version {stable['versionId']}; {rejected} under an "
                    "earlier spec and is not tried again until the object changes",
                )
            return Step(pinned_to(stable["versionId"]), state, verdict)

        return await self._analyse(body, owner, generation, spec, target, found, state, pinned_to)

    async def _analyse(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        generation: int,
        spec: RetailModelSpec,
        target: Target,
        found: ModelObject,
        state: dict[str, Any],
        pinned_to: Callable[[str], Target],
    ) -> Step:
        key = (owner.namespace, owner.name)
        stable = state["stable"]
        latest = found.version_id
        policy = spec.rollout.canary.analysis
        window = self._windows.get(key)
        if window is None or window.version_id != latest:
            window = _Window(
                latest,
                time.monotonic(),
                now_rfc3339(),
                GroupWindow(stable.get("sha256", "")),
                GroupWindow(found.sha256, watch_health=True),
            )
            self._windows[key] = window
            first_stable, first_canary = await self._scrape(owner)
            window.stable.record(first_stable)
            window.canary.record(first_canary)
            self.emit(
                body,
                "Normal",
                ANALYZING,
                f"Analysing version {latest} on {spec.rollout.canary.replicas} canary pod(s) "
                f"beside the stable version {stable['versionId']} for at least "
                f"{policy.duration_seconds} s and {policy.min_requests} requests",
            )
        for manifest in rendering.render_canary(spec, owner, pinned_to(latest)):
            await self.kube.apply(manifest)

        stable_now, canary_now = await self._scrape(owner)
        window.stable.record(stable_now)
        window.canary.record(canary_now)
        verdict = analysis.judge(
            window.stable.evidence(),
            window.canary.evidence(),
            policy,
            time.monotonic() - window.started,
        )
        stable["modelVersion"] = window.stable.model_version or stable.get("modelVersion", "")
        candidate = state.get("candidate") or {}
        known = candidate.get("modelVersion", "") if candidate.get("versionId") == latest else ""
        candidate = _version(latest, found.sha256, window.canary.model_version or known)
        state.update(
            candidate=candidate,
            figures=_figures(verdict.figures, verdict.figures.summary(policy)),
            startedAt=window.started_at,
        )

        if verdict.decision is analysis.Decision.WAIT:
            state["phase"] = ANALYZING
            return Step(
                pinned_to(stable["versionId"]),
                state,
                _condition("False", ANALYZING, f"Version {latest}: {verdict.message}"),
                self.poll_seconds,
            )
        self.forget(key)
        await self._remove_canary(owner)
        if verdict.decision is analysis.Decision.PROMOTE:
            message = f"Version {latest} promoted: {verdict.message}"
            self.emit(body, "Normal", PROMOTED, message)
            state.update(phase=PROMOTED, stable=candidate)
            return Step(pinned_to(latest), state, _condition("True", PROMOTED, message))
        message = (
            f"Version {latest} rolled back by the {verdict.rule} rule: {verdict.message}; the "
            f"stable pods keep version {stable['versionId']}"
        )
        self.emit(body, "Warning", ROLLED_BACK, message)
        state.update(phase=ROLLED_BACK, rejectedVersionId=latest, rejectedGeneration=generation)
        return Step(
            pinned_to(stable["versionId"]), state, _condition("False", ROLLED_BACK, message)
        )


def _had_reason(status: Mapping[str, Any], reason: str) -> bool:
    return any(
        c.get("type") == MODEL_ROLLED_OUT and c.get("reason") == reason
        for c in status.get("conditions", [])
    )
