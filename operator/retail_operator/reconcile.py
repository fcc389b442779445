"""One reconcile of one RetailModel: check, decide, carry out, report.

``Reconciler.reconcile`` runs the whole loop: resolve and judge the image (ECR), find the model
(S3), read what runs now from the live children the RetailModel owns, choose what the children
should run (``gate``; under the Canary strategy the state machine ``canary.machine`` says which
model version the stable pods keep and whether a candidate runs beside them, and this module
carries out its plan: the canary's children, the evidence, the verdict), apply the children
(``children``: only ones it owns), watch the stable pods for drift when the spec asks
(``drift``: it only reports) and write the status and Events. The status is output only.

``Reconciler.child_changed`` is the cheap path taken when a child changes: put back what this
replica applied last, if the child drifted, and refresh availability, with no AWS calls.
Reconciles of one RetailModel never overlap (its lock); different ones run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError

from retail_contract.source import MODEL_SOURCE_FILENAME, ModelSource
from retail_operator import gate, metrics, policy, rendering, scanpolicy
from retail_operator.aws.images import ImageInspector
from retail_operator.aws.objects import ModelInspector
from retail_operator.aws.signatures import ImageSignatures
from retail_operator.canary import machine
from retail_operator.canary.scraping import MetricsReader
from retail_operator.children import Children, LiveChildren
from retail_operator.conditions import (
    DELETING,
    DRIFT,
    IMAGE_SIGNATURE_VERIFIED,
    MODEL_ROLLED_OUT,
    MODEL_SIGNATURE_VERIFIED,
    READY,
    Announcement,
    Check,
    announcements,
    describe,
    merge,
    now_rfc3339,
)
from retail_operator.drift.judge import FEATURE_DRIFT, PREDICTION_DRIFT
from retail_operator.drift.watch import DriftWatch
from retail_operator.errors import (
    NameConflict,
    NotLeader,
    OperatorError,
    PolicyViolation,
    SpecInvalid,
)
from retail_operator.facts import DeploymentState, ModelObject, ScanReport
from retail_operator.kube import KubeApi, merge_patch, owns_replicas
from retail_operator.objects import Applied, Tracked
from retail_operator.rendering import Owner, Target
from retail_operator.scanpolicy import ImageDecision, evaluate_scan
from retail_operator.spec import ImageRef, ModelSpec, RetailModelSpec
from retail_operator.status import (
    ImageStatus,
    ModelStatus,
    ReplicaStatus,
    RetailModelStatus,
    RolloutStatus,
    condition,
    parse,
)
from retail_operator.status import (
    ModelSource as SourceStatus,
)

logger = logging.getLogger(__name__)

# Exceptions ending within this are counted on /metrics (retail_operator_scan_exceptions_expiring).
EXPIRY_WARNING = timedelta(days=7)
# (involved object body, event type, reason, message)
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass(frozen=True)
class Outcome:
    status: RetailModelStatus  # the RetailModel's status as written
    retry_after: float | None = None  # look again this soon (a scan running, a canary, throttling)


@dataclass(frozen=True)
class _Subject:
    """A RetailModel body, parsed once."""

    owner: Owner
    generation: int
    spec: RetailModelSpec
    status: RetailModelStatus  # what this replica wrote last, else what the body says

    @classmethod
    def parse(cls, tracked: Tracked) -> _Subject:
        """``SpecInvalid`` naming the field when the spec cannot be read."""
        body = tracked.body
        meta = body["metadata"]
        try:
            spec = RetailModelSpec.from_body(body.get("spec", {}))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SpecInvalid(f"spec.{where}: {first['msg']}") from None
        written = tracked.written
        return cls(
            owner=Owner(meta["name"], meta["namespace"], meta["uid"]),
            generation=int(meta.get("generation", 1)),
            spec=spec,
            status=written if written is not None else parse(tracked.status),
        )

    def status_check(self, type_: str) -> Check | None:
        """A condition as last written, to carry through a reconcile that cannot judge it."""
        found = condition(self.status, type_)
        return Check.from_condition(found) if found is not None else None


@dataclass(frozen=True)
class _ImageCheck:
    digest: str
    report: ScanReport | None
    check: Check
    decision: ImageDecision | None


@dataclass(frozen=True)
class _Running:
    """What the children run now, read from the live objects this RetailModel owns."""

    target: Target | None  # None: no Deployment, or its model source cannot be read
    deployment: dict[str, Any] | None
    config_map: dict[str, Any] | None


@dataclass
class Reconciler:
    kube: KubeApi
    images: ImageInspector
    models: ModelInspector
    pods: MetricsReader
    emit: EventSink
    signatures: ImageSignatures = field(default_factory=ImageSignatures)
    pending_seconds: float = 5.0  # look again this soon while a scan runs
    poll_seconds: float = 5.0  # and while a canary is analysed
    clock: Callable[[], float] = time.monotonic  # the analysis window's clock
    service_creates: int = 8  # Services created at once (``children``)
    children: Children = field(init=False)

    def __post_init__(self) -> None:
        self.children = Children(self.kube, self.service_creates)

    def forget(self, key: tuple[str, str]) -> None:
        metrics.blocked_images.forget(key)
        metrics.expiring_exceptions.forget(key)
        metrics.drifting.forget(key)

    async def reconcile(self, tracked: Tracked) -> Outcome:
        async with tracked.lock:
            if tracked.leaving:
                return await self._leave(tracked)
            live = self.children.live(tracked)
            try:
                subject = _Subject.parse(tracked)
            except SpecInvalid as error:
                return await self._refuse(tracked, live, error)
            return await self._reconcile(tracked, live, subject)

    async def _reconcile(self, tracked: Tracked, live: LiveChildren, subject: _Subject) -> Outcome:
        spec, owner = subject.spec, subject.owner
        policies = policy.applying(
            tracked.registry.policies.values(), tracked.registry.namespaces.get(owner.namespace, {})
        )
        need = policy.requirements(policies)
        bucket_owner = need.bucket_owner
        broken = policy.violations(spec, policies, datetime.now(UTC))
        image, (found, model), running = await asyncio.gather(
            self._check_image(spec.image, spec),
            self._check_model(spec.model, bucket_owner),
            _running(live),
        )
        if found is not None:
            tracked.model_seen = found.identity
        if found is not None and (too_large := policy.model_too_large(found.size, policies)):
            broken.append(too_large)
        tracked.registry.record_violations(tracked.key, {v.policy for v in broken})
        keys, signature = await self._check_signature(spec, policies, found, model, bucket_owner)
        admitted = gate.signed(model, signature)  # the model's check, its signature's included
        image_signature = await self._check_image_signature(spec, policies, image.digest)
        # The image's check, its signature's included: refused like a blocked scan.
        image_gate = gate.signed(image.check, image_signature)
        # What the pods are told: the bucket's owner, and the keys a model must be signed with
        # (left as they are when the keys cannot be read, so no check is ever turned off).
        owned = {"bucket_owner": bucket_owner} | (
            {"trusted_keys": keys} if keys is not None else {}
        )
        model_source = spec.model.model_copy(update=owned)
        desired = (
            Target(spec.image.pinned(image.digest), model_source, need.max_model_bytes)
            if image.digest
            else None
        )
        running_check, admissible = await self._check_running(running.target, spec, image)
        if running.target is not None and policy.image_refused(running.target.image, policies):
            admissible = False
        previous = None
        if admissible and running.target is not None:  # kept as it runs, under today's rules
            owned_model = running.target.model.model_copy(update=owned)
            previous = replace(
                running.target, model=owned_model, max_model_bytes=need.max_model_bytes
            )
        target = gate.choose_target(desired, image_gate, admitted, previous)
        refusal: OperatorError | None = None
        if broken:  # outside the platform's policy: nothing new rolls out
            refusal = PolicyViolation("; ".join(map(str, broken)))
            target = previous
        key = tracked.key
        metrics.blocked_images.set(key, 0 if image.check.passed else 1)
        metrics.expiring_exceptions.set(
            key, scanpolicy.ending_soon(spec.scan_policy, datetime.now(UTC), EXPIRY_WARNING)
        )

        if tracked.leaving:  # deleted while its checks were made: apply nothing now
            return await self._leave(tracked)
        step: machine.Plan | None = None
        follows_canary = spec.rollout.canary_enabled and not spec.model.version_id
        if follows_canary and not broken and target is not None and found and admitted.passed:
            try:
                step = await self._canary(tracked, live, subject, running, target, found)
                target = step.stable
            except NameConflict as error:
                tracked.window = None
                refusal, target = error, None  # nothing applied: what runs keeps running
        elif not follows_canary:
            tracked.window = None
            await self._remove_canary(live, owner)

        deployment: DeploymentState | None = None
        if target is not None:
            memory = step.memory.to_json() if step is not None and step.memory else None
            try:
                deployment = await self._apply_children(tracked, live, subject, target, memory)
            except (SpecInvalid, NameConflict) as error:
                refusal = refusal or error  # nothing of it was applied over anyone's object
            else:
                if running.target is not None and running.target.model != target.model:
                    await self._refresh_pods(owner, target)
        if deployment is None and running.deployment is not None:
            deployment = DeploymentState.from_live(running.deployment)

        applied = target is not None and not isinstance(refusal, SpecInvalid | NameConflict)
        deployed = target if applied else running.target
        checks = describe(
            image=image.check,
            model=model,
            signature=signature,
            image_signature=image_signature,
            desired_image=desired.image if desired else None,
            deployed_image=deployed.image if deployed else None,
            deployment=deployment,
            minimum=spec.minimum_replicas,
            running=running_check,
            now=datetime.now(UTC),
        )
        if step is not None:
            checks[MODEL_ROLLED_OUT] = step.check
        elif follows_canary and (held := subject.status_check(MODEL_ROLLED_OUT)) is not None:
            checks[MODEL_ROLLED_OUT] = held  # nothing new to judge by (a check failed)
        if refusal is not None:
            serving = f"; still serving {deployed.image}" if deployed else ""
            checks[READY] = Check("False", refusal.reason, f"{refusal.message}{serving}")

        status = RetailModelStatus(
            image=_image_status(spec.image, image),
            model=_model_status(spec.model, found),
        )
        if step is not None:
            status["rollout"] = step.rollout
        if deployment is not None:
            status["replicas"] = _replica_status(deployment)
        if deployed is not None:
            status["deployedImage"] = deployed.image
            status["deployedModel"] = _source_status(deployed.model)
            if running.target is not None and running.target.image != deployed.image:
                self.emit(tracked.body, "Normal", "RollingOut", f"Rolling out {deployed.image}")
        if image.decision and image.decision.expired and not _was_blocked(subject.status):
            self.emit(
                tracked.body,
                "Warning",
                "ExceptionExpired",
                scanpolicy.expired_note(image.decision.expired),
            )
        if step is not None:
            self._announce(tracked, step.announcements)
        drift_retry = await self._watch_drift(tracked, subject, running, checks, status)
        written = await self._write_status(tracked, checks, status, subject.generation)
        retries = [c.retry_after for c in (image_gate, admitted) if c.retry_after is not None]
        if step is not None and step.retry_after is not None:
            retries.append(step.retry_after)
        if drift_retry is not None:
            retries.append(drift_retry)
        return Outcome(written, min(retries) if retries else None)

    async def _watch_drift(
        self,
        tracked: Tracked,
        subject: _Subject,
        running: _Running,
        checks: dict[str, Check],
        status: RetailModelStatus,
    ) -> float | None:
        """Drift of the stable pods' model (spec.monitoring.drift): scrape them when a scrape
        is due, judge a window that ended, and say so in the Drift condition, status.drift and
        an Event on a change of verdict. Reports only: nothing here changes what runs. Returns
        how soon to look again (None: drift is not watched)."""
        policy = subject.spec.monitoring.drift
        if policy is None or not policy.enabled:
            tracked.drift = None
            metrics.drifting.forget(tracked.key)
            return None
        watch = tracked.drift
        if watch is None or watch.policy != policy:
            watch = tracked.drift = DriftWatch(policy, poll_seconds=self.poll_seconds)
        now = self.clock()
        if watch.due(now) and running.deployment is not None:
            scrape = await self.pods.sample(running.deployment)
            report = watch.observe(scrape, now, now_rfc3339())
            if report is not None:
                self._announce_drift(tracked, subject, report.check)
        held = subject.status_check(DRIFT)
        if watch.last is None and held is not None and held.reason != "NotChecked":
            checks[DRIFT] = held  # a verdict from before this replica's first window ended
        else:
            checks[DRIFT] = watch.check(now)
        last = watch.last_status or subject.status.get("drift")
        if last:
            status["drift"] = last
        metrics.drifting.set(tracked.key, 1 if checks[DRIFT].status == "True" else 0)
        return watch.wait(now)

    def _announce_drift(self, tracked: Tracked, subject: _Subject, check: Check) -> None:
        """An Event when a window's verdict differs from the last one's: a Warning for drift,
        Normal otherwise."""
        metrics.DRIFT_WINDOWS.labels(check.reason).inc()
        previous = subject.status_check(DRIFT)
        if previous is not None and previous.reason == check.reason:
            return
        drifted = check.reason in (FEATURE_DRIFT, PREDICTION_DRIFT)
        self.emit(tracked.body, "Warning" if drifted else "Normal", check.reason, check.message)

    async def _leave(self, tracked: Tracked) -> Outcome:
        """A RetailModel on its way out (``deletionTimestamp``: a foreground deletion, whose
        garbage collector removes the children before their owner, or a finalizer holding it):
        nothing is applied or re-applied, or the children being collected would be made again.
        Ready says so for the generation the deletion gave it, the rest of the status kept as
        written; its gauges and policy violations go now, not when it is gone. Nothing of it
        is re-checked meanwhile (its image, drift): it is being removed."""
        self.forget(tracked.key)
        tracked.registry.record_violations(tracked.key, set())
        held = tracked.written
        status = held if held is not None else cast(RetailModelStatus, dict(tracked.status))
        checks = {c["type"]: Check.from_condition(c) for c in status.get("conditions", [])}
        finalizers = tracked.body["metadata"].get("finalizers") or []
        waiting = f"; waiting for {', '.join(finalizers)}" if finalizers else ""
        checks[READY] = Check("False", DELETING, f"Being deleted: nothing is applied{waiting}")
        generation = int(tracked.body["metadata"].get("generation", 1))
        return Outcome(await self._write_status(tracked, checks, status, generation))

    async def _refuse(self, tracked: Tracked, live: LiveChildren, error: SpecInvalid) -> Outcome:
        """A spec that cannot be read: say so, naming the field; what runs keeps running."""
        running = await _running(live)
        serving = f"; still serving {running.target.image}" if running.target else ""
        check = Check("False", error.reason, f"{error.message}{serving}")
        generation = int(tracked.body["metadata"].get("generation", 1))
        written = await self._write_status(tracked, {READY: check}, RetailModelStatus(), generation)
        return Outcome(written)

    async def _canary(
        self,
        tracked: Tracked,
        live: LiveChildren,
        subject: _Subject,
        running: _Running,
        target: Target,
        found: ModelObject,
    ) -> machine.Plan:
        """One canary step: the machine's plan, carried out (evidence gathered, the verdict
        asked for, the canary applied or removed)."""
        spec, owner = subject.spec, subject.owner
        memory = machine.recover(running.config_map, rendering.MEMORY_ANNOTATION, running.target)
        previous = subject.status_check(MODEL_ROLLED_OUT)
        step = machine.plan(
            spec=spec,
            generation=subject.generation,
            target=target,
            found=found,
            memory=memory,
            window=tracked.window,
            previous_reason=previous.reason if previous else "",
        )
        if step.analyse is None or step.canary is None:
            tracked.window = None
            await self._remove_canary(live, owner)
            return await self._learn_stable_version(step, running)
        canary_deployment: dict[str, Any] = {}
        canary = rendering.render_canary(spec, owner, step.canary)
        await self.children.claim(live, canary)
        for manifest in canary:
            canary_deployment = await self.children.apply(live, manifest)
        window = tracked.window
        if window is None or window.candidate.version_id != step.analyse.version_id:
            assert step.memory is not None and step.memory.stable is not None
            window = machine.Window.open(
                step.analyse, step.memory.stable, now=self.clock(), now_text=now_rfc3339()
            )
            tracked.window = window
        stable_pods, canary_pods = await asyncio.gather(
            self.pods.sample(running.deployment) if running.deployment else _nothing(),
            self.pods.sample(canary_deployment),
        )
        window.stable.record(stable_pods)
        window.canary.record(canary_pods)
        concluded = machine.conclude(
            step,
            spec=spec,
            generation=subject.generation,
            target=target,
            window=window,
            now=self.clock(),
            poll_seconds=self.poll_seconds,
        )
        if concluded.canary is None:  # a verdict: the canary goes
            tracked.window = None
            await self._remove_canary(live, owner)
            logger.info("%s/%s: %s", owner.namespace, owner.name, concluded.check.message)
        return concluded

    async def _learn_stable_version(self, step: machine.Plan, running: _Running) -> machine.Plan:
        """At rest, the stable version's model version comes from its pods, once: it is
        remembered (on the stable ConfigMap) with the rest."""
        memory = step.memory
        if memory is None or memory.stable is None or memory.stable.model_version:
            return step
        if running.deployment is None:
            return step
        window = machine.Window.open(memory.stable, memory.stable, now=0.0, now_text="")
        window.stable.record(await self.pods.sample(running.deployment))
        if not window.stable.model_version:
            return step
        stable = replace(memory.stable, model_version=window.stable.model_version)
        rollout = RolloutStatus(**step.rollout)
        rollout["stable"] = stable.status()
        return replace(step, memory=replace(memory, stable=stable), rollout=rollout)

    async def _remove_canary(self, live: LiveChildren, owner: Owner) -> None:
        """No canary may stay behind outside an analysis: remove any this RetailModel owns."""
        track = rendering.CANARY_TRACK
        await self.children.remove(live, "Deployment", track.deployment_name(owner))
        await self.children.remove(live, "ConfigMap", track.config_map_name(owner))
        await self.children.remove(live, "PodDisruptionBudget", track.deployment_name(owner))

    async def _apply_children(
        self,
        tracked: Tracked,
        live: LiveChildren,
        subject: _Subject,
        target: Target,
        memory: str | None,
    ) -> DeploymentState:
        """Apply the children: the Service alongside the ConfigMap then the Deployment (which
        mounts the ConfigMap, so it goes second), then the disruption budget and the
        autoscaler the spec asks for; remove the ones it no longer asks for. A new Service
        waits longest at the API server (it allocates a cluster IP): applied after the others,
        it held each reconcile for seconds when many RetailModels rolled out at once
        (bench/RESULTS.md)."""
        spec, owner = subject.spec, subject.owner
        replicas = await self._replicas(live, spec, owner)
        before = await live.owned("Deployment", owner.name)
        rendered = rendering.render_children(spec, owner, target, memory, replicas=replicas)
        await self.children.claim(live, rendered)
        documents = {m["kind"]: m for m in rendered}

        async def config_then_deployment() -> dict[str, Any]:
            await self.children.apply(live, documents["ConfigMap"])
            return await self.children.apply(live, documents["Deployment"])

        applied: tuple[dict[str, Any], dict[str, Any]] = await asyncio.gather(
            config_then_deployment(), self.children.apply(live, documents["Service"])
        )
        for kind in rendering.OPTIONAL_KINDS:
            if kind in documents:
                await self.children.apply(live, documents[kind])
            else:
                await self.children.remove(live, kind, owner.name)
        changed = _generation(applied[0])
        if before is not None and tracked.applied and _same_template(before, applied[0]):
            # This apply changed no pod template: the rollout is where it was, even when the
            # generation moved (the autoscaler's scale, which the watched copy may not have yet).
            changed = tracked.applied.deployment_generation
        manifests = {(m["kind"], m["metadata"]["name"]): m for m in rendered}
        if spec.autoscaling is not None:
            # The count a new Deployment starts with is the autoscaler's from then on: a
            # scale before the next reconcile is no drift to put back.
            deployment = documents["Deployment"]
            counted = {k: v for k, v in deployment["spec"].items() if k != "replicas"}
            manifests[("Deployment", owner.name)] = {**deployment, "spec": counted}
        tracked.applied = Applied.of(target, manifests, changed)
        # What the status reports is the Deployment as last seen, not necessarily the apply's
        # answer: a new Service waits its turn for seconds under load (the API server
        # allocates cluster IPs one at a time), and the pods may be ready by then. Reported
        # from the answer, the first status said "rolling out" when they were ready, and a
        # second write with its Event followed at once (bench/notes.md, 10,000 RetailModels).
        newest = tracked.registry.newest(owner.namespace, "Deployment", applied[0])
        return DeploymentState.from_live(newest, changed)

    async def _replicas(
        self, live: LiveChildren, spec: RetailModelSpec, owner: Owner
    ) -> int | None:
        """The replica count to apply: the spec's; with an autoscaler, the spec's only to
        start a new Deployment (within the autoscaler's bounds), and none after, so the
        autoscaler owns it. Leaving the field out of an apply would reset it to 1 while the
        operator is its only owner: the live count is first handed over to another field
        manager (the same count, written by another field manager), and only then left out."""
        scaling = spec.autoscaling
        if scaling is None:
            return spec.replicas
        existing = await live.owned("Deployment", owner.name)
        if existing is None:
            return max(scaling.min_replicas, min(spec.replicas, scaling.max_replicas))
        full = await self.kube.get("apps/v1", "Deployment", owner.namespace, owner.name)
        if full is not None and owns_replicas(full):
            await self.kube.hand_off_replicas(
                owner.namespace, owner.name, int(full["spec"]["replicas"])
            )
        return None

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
        except NotLeader:
            raise
        except OperatorError as error:
            logger.warning(
                "%s/%s: pods not annotated with their new model source (%s); they read it on "
                "the kubelet's next sync",
                owner.namespace,
                owner.name,
                error,
            )

    async def _check_image(self, reference: ImageRef, spec: RetailModelSpec) -> _ImageCheck:
        try:
            digest = await self.images.digest(reference)
        except OperatorError as error:
            return _ImageCheck("", None, Check.failed(error), None)
        try:
            report = await self.images.scan(reference, digest)
        except OperatorError as error:
            return _ImageCheck(digest, None, Check.failed(error), None)
        decision = evaluate_scan(report, spec.scan_policy, datetime.now(UTC))
        retry = self.pending_seconds if decision.pending else decision.recheck_after
        check = Check(
            "True" if decision.passed else "False", decision.reason, decision.message, retry
        )
        return _ImageCheck(digest, report, check, decision)

    async def _check_running(
        self, running: Target | None, spec: RetailModelSpec, spec_image: _ImageCheck
    ) -> tuple[Check | None, bool]:
        """Judge the image that runs now against the scan policy: on every reconcile, so
        findings published after the rollout are noticed within a resync (the finished-scan
        cache bounds the ECR calls). Also whether it may be kept running by this reconcile
        (applied again as it is): only if it passes the gate now."""
        if running is None:
            return None, False
        if spec_image.decision is not None and running.image == spec.image.pinned(
            spec_image.digest
        ):
            decision = spec_image.decision  # the same digest, just read
        else:
            repository, _, digest = running.image.partition("@")
            reference = ImageRef(repository=repository, tag=spec.image.tag)
            try:
                reference.registry_id  # noqa: B018  (an image the gate cannot check)
                report = await self.images.scan(reference, digest)
            except ValueError:
                return Check(
                    "False",
                    "NotFromEcr",
                    f"The running image {running.image} is not an ECR image pinned by digest: "
                    "its scan cannot be read. It keeps running; nothing is applied over it "
                    "until the spec's image passes.",
                ), False
            except OperatorError as error:
                return Check.failed(error), False
            decision = evaluate_scan(report, spec.scan_policy, datetime.now(UTC))
        return gate.running_check(decision, running.image), decision.passed

    async def _check_signature(
        self,
        spec: RetailModelSpec,
        policies: list[policy.Policy],
        found: ModelObject | None,
        model: Check,
        bucket_owner: str,
    ) -> tuple[tuple[str, ...] | None, Check | None]:
        """The keys a model must be signed with (``None`` when they cannot be read) and the
        ModelSignatureVerified check (``None`` when no key is required)."""
        try:
            keys = policy.trusted_model_keys(spec, policies)
        except ValueError as error:
            return None, Check(
                "False", "TrustedKeysInvalid", f"A trusted key is unreadable: {error}"
            )
        if not keys:
            return keys, None
        if found is None or not model.passed:
            return keys, Check("Unknown", "NotChecked", "The model object was not found yet")
        try:
            verdict = await self.models.signature(
                spec.model, found, keys, bucket_owner=bucket_owner
            )
        except OperatorError as error:
            return keys, Check.failed(error)
        return keys, gate.check_signature(verdict, "model")

    async def _check_image_signature(
        self, spec: RetailModelSpec, policies: list[policy.Policy], digest: str
    ) -> Check | None:
        """The ImageSignatureVerified check of the spec's image digest (``None`` when no key is
        required): Unknown while the digest or the registry cannot be read."""
        try:
            keys = policy.trusted_image_keys(spec, policies)
        except ValueError as error:
            return Check("False", "TrustedKeysInvalid", f"A trusted key is unreadable: {error}")
        if not keys:
            return None
        if not digest:
            return Check("Unknown", "NotChecked", "The image's digest is not known yet")
        try:
            found = await self.signatures.check(spec.image, digest, keys)
        except OperatorError as error:
            return Check.failed(error)
        return gate.check_signature(found, "image")

    async def _check_model(
        self, source: ModelSpec, bucket_owner: str
    ) -> tuple[ModelObject | None, Check]:
        try:
            found = await self.models.head(source, bucket_owner=bucket_owner)
        except OperatorError as error:
            return None, Check.failed(error)
        return found, gate.check_model(source, found)

    async def child_changed(
        self, tracked: Tracked, kind: str, name: str, live: Mapping[str, Any] | None
    ) -> RetailModelStatus | None:
        """A child changed or vanished: put back what this replica applied, and refresh
        availability."""
        async with tracked.lock:
            applied = tracked.applied
            written = tracked.written
            if applied is None or written is None or tracked.leaving:
                return None  # the RetailModel's own reconcile decides (or it is going)
            wanted = applied.manifest(kind, name)
            if wanted is None:
                return None  # a canary child: the full reconcile's canary step looks after it
            try:
                subject = _Subject.parse(tracked)
            except SpecInvalid:
                return None
            if live is not None:  # a reconcile may have seen a newer copy while this waited
                live = tracked.registry.newest(tracked.key[0], kind, dict(live))
            if live is None or not rendering.is_subset(wanted, live):
                live = await self.children.apply(self.children.live(tracked), dict(wanted))
                if kind == "Deployment":
                    applied = replace(applied, deployment_generation=_generation(live))
                    tracked.applied = applied
                self.emit(
                    tracked.body,
                    "Normal",
                    "DriftReverted",
                    f"{kind} {name} did not match the spec; re-applied",
                )
            if kind != "Deployment":
                return None
            checks = {c["type"]: Check.from_condition(c) for c in written.get("conditions", [])}
            image = written.get("image")
            digest = image["digest"] if image else ""
            deployment = DeploymentState.from_live(dict(live), applied.deployment_generation)
            refreshed = describe(
                image=checks.get("ImageScanPassed", Check.from_condition(None)),
                model=checks.get("ModelAvailable", Check.from_condition(None)),
                desired_image=subject.spec.image.pinned(digest) if digest else None,
                deployed_image=applied.target.image,
                deployment=deployment,
                minimum=subject.spec.minimum_replicas,
                running=checks.get("RunningImageCompliant"),
                signature=checks.get(MODEL_SIGNATURE_VERIFIED),
                image_signature=checks.get(IMAGE_SIGNATURE_VERIFIED),
                now=datetime.now(UTC),
            )
            for type_ in (MODEL_ROLLED_OUT, READY, DRIFT):
                if type_ in checks and type_ not in refreshed:
                    refreshed[type_] = checks[type_]
            if READY in checks and checks[READY].reason in _REFUSALS:
                refreshed[READY] = checks[READY]  # a refusal stands until a full reconcile
            status = RetailModelStatus(**written)
            status["replicas"] = _replica_status(deployment)  # the autoscaler's count, now
            # Only the full reconcile may claim a new generation as observed: this path has
            # looked at nothing but the child, so it speaks for the generation last reconciled.
            observed = int(written.get("observedGeneration", 0))
            return await self._write_status(tracked, refreshed, status, observed)

    def _announce(self, tracked: Tracked, announcements: tuple[Announcement, ...]) -> None:
        for announcement in announcements:
            self.emit(tracked.body, announcement.type, announcement.reason, announcement.message)

    async def _write_status(
        self,
        tracked: Tracked,
        checks: Mapping[str, Check],
        status: RetailModelStatus,
        generation: int,
    ) -> RetailModelStatus:
        """Patch the status if anything changed, post Events for transitions; return it."""
        written = tracked.written  # decoded once: a copy of its own each time
        before: Mapping[str, Any] = written if written is not None else tracked.status
        old_conditions = (written if written is not None else parse(before)).get("conditions", [])
        merged = merge(old_conditions, checks, generation=generation, now=now_rfc3339())
        new_status = RetailModelStatus(**status)
        new_status["observedGeneration"] = generation
        new_status["conditions"] = merged
        patch = merge_patch(before, new_status)
        if patch:
            namespace, name = tracked.key
            await self.kube.patch_status(namespace, name, tracked.uid, patch)
        if patch or written is None:  # else it is what is held already: not packed again
            tracked.written = new_status
        for event in announcements(old_conditions, merged):
            self.emit(tracked.body, event.type, event.reason, event.message)
        return new_status


# Ready's reasons for a spec that cannot be carried out: only a full reconcile may lift them.
_REFUSALS = frozenset({SpecInvalid.reason, NameConflict.reason, PolicyViolation.reason})


async def _nothing() -> list[Any]:
    return []


async def _running(live: LiveChildren) -> _Running:
    """What the stable children run now, read from the ones this RetailModel owns (never from
    its status): recovers a crash between an apply and the status write that would have
    recorded it, and is all a refused spec may keep running."""
    namespace, name = live.tracked.key
    owner = Owner(name, namespace, live.tracked.uid)
    deployment, config_map = await asyncio.gather(
        live.owned("Deployment", owner.name),
        live.owned("ConfigMap", rendering.config_map_name(owner)),
    )
    if deployment is None or config_map is None:
        return _Running(None, deployment, config_map)
    image = DeploymentState.from_live(deployment).image
    document = (config_map.get("data") or {}).get(MODEL_SOURCE_FILENAME, "")
    try:
        source = ModelSource.from_json(document)
    except ValueError:
        logger.warning("%s/%s: the model-source ConfigMap is not readable", *live.tracked.key)
        return _Running(None, deployment, config_map)
    target = Target(image=image, model=ModelSpec.from_source(source)) if image else None
    return _Running(target, deployment, config_map)


def _image_status(reference: ImageRef, image: _ImageCheck) -> ImageStatus:
    report, decision = image.report, image.decision
    return ImageStatus(
        tag=reference.tag,
        digest=image.digest,
        scanStatus=report.ecr_status if report else "",
        findingCounts=dict(decision.counts) if decision else {},
        scanCompletedAt=report.completed_at if report else "",
    )


def _model_status(source: ModelSpec, found: ModelObject | None) -> ModelStatus:
    return ModelStatus(
        s3Uri=source.s3_uri,
        etag=found.etag if found else "",
        versionId=found.version_id if found else "",
        sha256=found.sha256 if found else "",
    )


def _source_status(model: ModelSpec) -> SourceStatus:
    return SourceStatus(s3Uri=model.s3_uri, versionId=model.version_id, sha256=model.sha256)


def _was_blocked(status: RetailModelStatus) -> bool:
    """Whether the last reconcile already refused the image for its findings (so an expired
    exception has been announced)."""
    found = condition(status, "ImageScanPassed")
    return (
        found is not None
        and found["status"] == "False"
        and (found["reason"] == "VulnerabilitiesFound")
    )


def _generation(body: Mapping[str, Any]) -> int:
    return int(body.get("metadata", {}).get("generation", 0))


def _same_template(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether two reads of a Deployment carry the same pod template (a scale is no rollout)."""
    template = before.get("spec", {}).get("template")
    return template is not None and template == after.get("spec", {}).get("template")


def _replica_status(deployment: DeploymentState) -> ReplicaStatus:
    return ReplicaStatus(desired=deployment.replicas, available=deployment.available_replicas)
