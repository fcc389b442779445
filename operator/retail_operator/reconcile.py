"""One reconcile of one RetailModel: check, decide, apply, report.

``Reconciler.reconcile`` runs the whole loop: resolve and judge the image (ECR), find the model
(S3), choose what the children should run (``rollout``; under the Canary strategy, which model
version the stable pods keep and whether a candidate runs beside them: ``progressive``),
server-side apply them (``kube``), and write the status and Events.
``Reconciler.child_changed`` is the cheap path taken when a child changes: revert drift on
that child and refresh availability, with no AWS calls.
Reconciles of one RetailModel never overlap (a lock per object); different ones run
concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from retail_contract.source import MODEL_SOURCE_FILE, ModelSource
from retail_operator import conditions, metrics, rendering, rollout, scanpolicy
from retail_operator.aws.images import ImageInspector
from retail_operator.aws.objects import ModelInspector
from retail_operator.errors import OperatorError, TemporaryError
from retail_operator.facts import DeploymentState, ModelObject, ScanReport
from retail_operator.kube import KubeApi
from retail_operator.progressive import CanaryRollout, EventSink
from retail_operator.rendering import Owner, Target
from retail_operator.scanpolicy import ImageDecision, evaluate_scan
from retail_operator.spec import ImageRef, ModelSpec, RetailModelSpec

logger = logging.getLogger(__name__)

# Exceptions ending within this are counted on /metrics (retail_operator_scan_exceptions_expiring).
EXPIRY_WARNING = timedelta(days=7)


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any]  # the RetailModel's status as written
    retry_after: float | None = None  # look again this soon (a scan running, AWS throttled)


@dataclass(frozen=True)
class _Subject:
    """A RetailModel body, parsed once."""

    owner: Owner
    generation: int
    spec: RetailModelSpec
    status: dict[str, Any]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> _Subject:
        meta = body["metadata"]
        return cls(
            owner=Owner(meta["name"], meta["namespace"], meta["uid"]),
            generation=int(meta.get("generation", 1)),
            spec=RetailModelSpec.from_body(body.get("spec", {})),
            status=dict(body.get("status") or {}),
        )

    def deployed(self) -> Target | None:
        image = self.status.get("deployedImage")
        model = self.status.get("deployedModel")
        if not image or not model:
            return None
        return Target(image=str(image), model=ModelSpec.model_validate(model))


def _failed_check(error: OperatorError) -> rollout.Check:
    if isinstance(error, TemporaryError):
        return rollout.Check("Unknown", error.reason, error.message, error.retry_after)
    return rollout.Check("False", error.reason, error.message)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch


@dataclass
class Reconciler:
    kube: KubeApi
    images: ImageInspector
    models: ModelInspector
    emit: EventSink
    canary: CanaryRollout
    pending_seconds: float = 5.0
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # The status each RetailModel was last given here, read under its lock: a watch event that
    # waited on the lock holds a body from before the wait, whose status may be outdated.
    _written: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def _lock(self, owner: Owner) -> asyncio.Lock:
        return self._locks.setdefault((owner.namespace, owner.name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self._written.pop((namespace, name), None)
        self.canary.forget((namespace, name))
        metrics.blocked_images.forget((namespace, name))
        metrics.expiring_exceptions.forget((namespace, name))

    async def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        subject = _Subject.parse(body)
        async with self._lock(subject.owner):
            return await self._reconcile(body, subject)

    async def _reconcile(self, body: Mapping[str, Any], subject: _Subject) -> Outcome:
        spec = subject.spec
        (digest, report, image, decision), (model_object, model) = await asyncio.gather(
            self._check_image(subject), self._check_model(spec.model)
        )
        counts = decision.counts if decision else {}
        key = (subject.owner.namespace, subject.owner.name)
        metrics.blocked_images.set(key, 1 if decision is not None and not decision.passed else 0)
        metrics.expiring_exceptions.set(
            key, scanpolicy.ending_soon(spec.scan_policy, datetime.now(UTC), EXPIRY_WARNING)
        )
        desired = Target(spec.image.pinned(digest), spec.model) if digest else None
        previous = subject.deployed()
        if previous is None and not (image.passed and model.passed):
            previous = await self._live_target(subject.owner)
        target = rollout.choose_target(desired, image, model, previous)
        step = None
        follows_canary = spec.rollout.canary_enabled and not spec.model.version_id
        if follows_canary and target is not None and model_object is not None and model.passed:
            step = await self.canary.step(
                body, subject.owner, subject.generation, spec, target, model_object, subject.status
            )
            target = step.stable
        elif not follows_canary and "rollout" in subject.status:
            await self.canary.clear(subject.owner, subject.status["rollout"])
        running = await self._check_running(subject, target, desired, decision)

        deployment: DeploymentState | None = None
        if target is not None:
            deployment = await self._apply_children(spec, subject.owner, target)
            if previous is not None and previous.model != target.model:
                await self._refresh_pods(subject.owner, target)

        verdicts = rollout.describe(
            image=image,
            model=model,
            desired_image=desired.image if desired else None,
            deployed=target,
            deployment=deployment,
            replicas=spec.replicas,
            running=running,
        )
        if step is not None:
            verdicts.append(step.verdict)
        elif follows_canary and (held := _held_condition(subject.status)) is not None:
            verdicts.append(held)  # nothing new to judge by (a check failed): keep saying it
        status: dict[str, Any] = {
            "image": {
                "tag": spec.image.tag,
                "digest": digest,
                "scanStatus": report.ecr_status if report else "",
                "findingCounts": counts,
                "scanCompletedAt": report.completed_at if report else "",
            },
            "model": {
                "s3Uri": spec.model.s3_uri,
                "etag": model_object.etag if model_object else "",
                "versionId": model_object.version_id if model_object else "",
                "sha256": model_object.sha256 if model_object else "",
            },
        }
        if step is not None:
            status["rollout"] = step.status
        elif follows_canary and "rollout" in subject.status:
            status["rollout"] = subject.status["rollout"]
        if target is not None:
            status["deployedImage"] = target.image
            status["deployedModel"] = target.model.model_dump(by_alias=True)
            if previous is not None and previous.image != target.image:
                self.emit(body, "Normal", "RollingOut", f"Rolling out {target.image}")
        if decision and decision.expired and not _was_blocked(subject.status):
            self.emit(
                body, "Warning", "ExceptionExpired", scanpolicy.expired_note(decision.expired)
            )
        written = await self._write_status(body, subject, verdicts, status, subject.generation)
        retry = [c.retry_after for c in (image, model, step) if c and c.retry_after is not None]
        return Outcome(written, min(retry) if retry else None)

    async def _apply_children(
        self, spec: RetailModelSpec, owner: Owner, target: Target
    ) -> DeploymentState:
        """Apply the children: the Service alongside the ConfigMap then the Deployment (which
        mounts the ConfigMap, so it goes second). A new Service waits longest at the API server
        (it allocates a cluster IP): applied after the others, it held each reconcile for
        seconds when many RetailModels rolled out at once (bench/RESULTS.md)."""
        documents = {m["kind"]: m for m in rendering.render_children(spec, owner, target)}

        async def config_then_deployment() -> dict[str, Any]:
            await self.kube.apply(documents["ConfigMap"])
            return await self.kube.apply(documents["Deployment"])

        applied: tuple[dict[str, Any], dict[str, Any]] = await asyncio.gather(
            config_then_deployment(), self.kube.apply(documents["Service"])
        )
        return DeploymentState.from_live(applied[0])

    async def _refresh_pods(self, owner: Owner, target: Target) -> None:
        """Annotate the stable pods with the model source their ConfigMap now holds, so that
        their kubelet syncs them and refreshes the mounted file now rather than on its next
        periodic sync. Best effort: a pod that cannot be annotated still picks the model up,
        later."""
        annotation = rendering.source_annotation(target)
        try:
            pods = await self.kube.list(
                "v1", "Pod", owner.namespace, rendering.pod_selector(owner, canary_pods=False)
            )
            await asyncio.gather(
                *(
                    self.kube.merge_patch(
                        "v1",
                        "Pod",
                        owner.namespace,
                        pod["metadata"]["name"],
                        {"metadata": {"annotations": annotation}},
                    )
                    for pod in pods
                    if not annotation.items() <= pod["metadata"].get("annotations", {}).items()
                )
            )
        except OperatorError as error:
            logger.warning(
                "%s/%s: pods not annotated with their new model source (%s); they read it on "
                "the kubelet's next sync",
                owner.namespace,
                owner.name,
                error,
            )

    async def _check_image(
        self, subject: _Subject
    ) -> tuple[str, ScanReport | None, rollout.Check, ImageDecision | None]:
        try:
            digest = await self.images.digest(subject.spec.image)
        except OperatorError as error:
            return "", None, _failed_check(error), None
        try:
            report = await self.images.scan(subject.spec.image, digest)
        except OperatorError as error:
            return digest, None, _failed_check(error), None
        decision = evaluate_scan(report, subject.spec.scan_policy, datetime.now(UTC))
        retry = self.pending_seconds if decision.pending else decision.recheck_after
        check = rollout.Check(
            "True" if decision.passed else "False", decision.reason, decision.message, retry
        )
        return digest, report, check, decision

    async def _check_running(
        self,
        subject: _Subject,
        target: Target | None,
        desired: Target | None,
        decision: ImageDecision | None,
    ) -> rollout.Check | None:
        """Judge the image that runs (what the children run now) against the scan policy: on
        every reconcile, so findings published after the rollout are noticed within a resync
        (the finished-scan cache bounds the ECR calls)."""
        if target is None:
            return None
        if desired is not None and desired.image == target.image and decision is not None:
            return rollout.running_check(decision, target.image)  # the same digest, just read
        repository, _, digest = target.image.partition("@")
        reference = ImageRef(repository=repository, tag=subject.spec.image.tag)
        try:
            report = await self.images.scan(reference, digest)
        except OperatorError as error:
            return _failed_check(error)
        policy = subject.spec.scan_policy
        return rollout.running_check(evaluate_scan(report, policy, datetime.now(UTC)), target.image)

    async def _check_model(self, source: ModelSpec) -> tuple[ModelObject | None, rollout.Check]:
        try:
            found = await self.models.head(source)
        except OperatorError as error:
            return None, _failed_check(error)
        return found, rollout.check_model(source, found)

    async def _live_target(self, owner: Owner) -> Target | None:
        """What the children run now, read from them: recovers a crash between an apply and
        the status write that would have recorded it."""
        live = await self.kube.get("apps/v1", "Deployment", owner.namespace, owner.name)
        config = await self.kube.get(
            "v1", "ConfigMap", owner.namespace, rendering.config_map_name(owner)
        )
        if live is None or config is None:
            return None
        image = DeploymentState.from_live(live).image
        document = config.get("data", {}).get(MODEL_SOURCE_FILE, "")
        try:
            source = ModelSource.from_json(document)
        except ValueError:
            logger.warning(
                "%s/%s: the model-source ConfigMap is not readable; not recovering from it",
                owner.namespace,
                owner.name,
            )
            return None
        return Target(image=image, model=ModelSpec.from_source(source)) if image else None

    async def child_changed(
        self, body: Mapping[str, Any], kind: str, name: str, live: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """A child changed or vanished: put back what we own and refresh availability."""
        subject = _Subject.parse(body)
        async with self._lock(subject.owner):
            # A reconcile may have rolled out something new while this event waited for the
            # lock: judge the child by what was recorded last, not by the body handed in.
            latest = self._written.get((subject.owner.namespace, subject.owner.name))
            if latest is not None:
                subject = replace(subject, status=latest)
            target = subject.deployed()
            if target is None:
                return None  # nothing rolled out yet: the RetailModel's own reconcile decides
            wanted = next(
                (
                    m
                    for m in rendering.render_children(subject.spec, subject.owner, target)
                    if m["kind"] == kind and m["metadata"]["name"] == name
                ),
                None,
            )
            if wanted is None:
                return None  # a canary child: the full reconcile's canary step looks after it
            if live is None or not rendering.is_subset(wanted, live):
                live = await self.kube.apply(wanted)
                self.emit(
                    body,
                    "Normal",
                    "DriftReverted",
                    f"{kind} {wanted['metadata']['name']} did not match the spec; re-applied",
                )
            if kind != "Deployment":
                return None
            previous = {c["type"]: c for c in subject.status.get("conditions", [])}
            image, model = (
                _check_from_condition(previous.get(t))
                for t in (conditions.IMAGE_SCAN_PASSED, conditions.MODEL_AVAILABLE)
            )
            running_condition = previous.get(conditions.RUNNING_IMAGE_COMPLIANT)
            running = _check_from_condition(running_condition) if running_condition else None
            digest = subject.status.get("image", {}).get("digest", "")
            verdicts = rollout.describe(
                image=image,
                model=model,
                desired_image=subject.spec.image.pinned(digest) if digest else None,
                deployed=target,
                deployment=DeploymentState.from_live(dict(live)),
                replicas=subject.spec.replicas,
                running=running,
            )
            held = _held_condition(subject.status)
            if held is not None:
                verdicts.append(held)
            status = {k: v for k, v in subject.status.items() if k != "conditions"}
            # Only the full reconcile may claim a new generation as observed: this path has
            # looked at nothing but the child, so it speaks for the generation last reconciled.
            observed = int(subject.status.get("observedGeneration", 0))
            return await self._write_status(body, subject, verdicts, status, observed)

    async def _write_status(
        self,
        body: Mapping[str, Any],
        subject: _Subject,
        verdicts: list[conditions.Verdict],
        status: dict[str, Any],
        generation: int,
    ) -> dict[str, Any]:
        """Patch the status if anything changed, post Events for transitions; return it."""
        old_conditions = subject.status.get("conditions", [])
        merged = conditions.merge(
            old_conditions, verdicts, generation=generation, now=conditions.now_rfc3339()
        )
        new_status = {**status, "observedGeneration": generation, "conditions": merged}
        patch = merge_patch(subject.status, new_status)
        if patch:
            await self.kube.patch_status(subject.owner.namespace, subject.owner.name, patch)
        self._written[(subject.owner.namespace, subject.owner.name)] = new_status
        for event in conditions.announcements(old_conditions, merged):
            self.emit(body, event.type, event.reason, event.message)
        return new_status


def _was_blocked(status: Mapping[str, Any]) -> bool:
    """Whether the last reconcile already refused the image for its findings (so an expired
    exception has been announced)."""
    return any(
        c.get("type") == conditions.IMAGE_SCAN_PASSED
        and c.get("status") == "False"
        and c.get("reason") == "VulnerabilitiesFound"
        for c in status.get("conditions", [])
    )


def _held_condition(status: Mapping[str, Any]) -> conditions.Verdict | None:
    """The ModelRolledOut condition as last written, to carry through a reconcile that could
    not take a canary step."""
    for condition in status.get("conditions", []):
        if condition.get("type") == conditions.MODEL_ROLLED_OUT:
            return conditions.Verdict(
                condition["type"], condition["status"], condition["reason"], condition["message"]
            )
    return None


def _check_from_condition(condition: Mapping[str, Any] | None) -> rollout.Check:
    if condition is None:
        return rollout.Check("Unknown", "NotChecked", "not checked yet")
    return rollout.Check(condition["status"], condition["reason"], condition["message"])
