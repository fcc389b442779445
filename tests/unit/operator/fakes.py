"""In-process stand-ins for the reconciler's collaborators, for unit tests of its decisions.

``ObjectStore`` keeps objects the way the API server would for the calls the reconciler
makes (server-side apply, reads, deletes with a uid precondition, status patches), giving
Deployments a ready status, so unit tests can look at what was applied and what was left
alone. The real API server is exercised by tests/integration/operator.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retail_operator.canary.analysis import Counts
from retail_operator.canary.evidence import PodReading, PodState
from retail_operator.canary.scraping import Scrape
from retail_operator.facts import Finding, ModelObject, ScanReport, ScanState
from retail_operator.objects import Registry, Tracked
from retail_operator.reconcile import Reconciler
from retail_operator.spec import ImageRef, ModelSpec
from retail_provenance import verdict
from retail_provenance.verdict import Verdict

REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
DIGESTS = {tag: "sha256:" + str(n) * 64 for n, tag in enumerate(("v1", "v2", "v3"), start=1)}
_uids = itertools.count(1)
_versions = itertools.count(
    1
)  # the store's resourceVersions, as the API server's: each write's higher


def pinned(tag: str) -> str:
    return f"{REPO}@{DIGESTS[tag]}"


@dataclass
class ObjectStore:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    applied: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    patched_pods: list[str] = field(default_factory=list)
    handed_off: list[int] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) of each GET
    gate: asyncio.Event | None = None  # holds status writes while set up
    service_gate: asyncio.Event | None = None  # holds Service applies while set up
    # A new Deployment answered as the API server answers a create: no status yet (its
    # controller has not seen it). Else every Deployment is answered ready.
    fresh_status: bool = False
    # What a watch would deliver: every change, as (kind, deleted, body).
    watch: Callable[[str, bool, dict[str, Any]], object] = lambda *_: None

    def put(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as someone else would (no server-side apply)."""
        body = copy.deepcopy(manifest)
        body["metadata"].setdefault("uid", f"uid-{next(_uids)}")
        body["metadata"]["resourceVersion"] = str(next(_versions))
        key = (body["metadata"]["namespace"], body["kind"], body["metadata"]["name"])
        self.objects[key] = body
        self.watch(body["kind"], False, copy.deepcopy(body))
        return body

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, *, cached: bool = False
    ) -> Any:
        self.reads.append((kind, name))
        return copy.deepcopy(self.objects.get((namespace, kind, name)))

    async def list(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        return []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] == "Service" and self.service_gate is not None:
            await self.service_gate.wait()
        self.applied.append(copy.deepcopy(manifest))
        key = (manifest["metadata"]["namespace"], manifest["kind"], manifest["metadata"]["name"])
        created = key not in self.objects
        live = copy.deepcopy(manifest)
        live["metadata"]["uid"] = (
            self.objects.get(key, {}).get("metadata", {}).get("uid", f"uid-{next(_uids)}")
        )
        earlier = self.objects.get(key, {})
        generation = earlier.get("metadata", {}).get("generation", 0)
        changed = {**earlier.get("spec", {}), **manifest.get("spec", {})} != earlier.get("spec")
        live["metadata"]["generation"] = generation + 1 if changed else generation
        live["metadata"]["resourceVersion"] = str(next(_versions))
        if manifest["kind"] == "Deployment":
            before = self.objects.get(key, {}).get("spec", {}).get("replicas", 1)
            replicas = manifest["spec"].get("replicas", before)
            live["spec"]["replicas"] = replicas
            owned = {"f:replicas": {}} if "replicas" in manifest["spec"] else {}
            live["metadata"]["managedFields"] = [
                {"manager": "retail-operator", "operation": "Apply", "fieldsV1": {"f:spec": owned}}
            ]
            live["metadata"]["annotations"] = {
                **(manifest["metadata"].get("annotations") or {}),
                "deployment.kubernetes.io/revision": "1",
            }
            live["status"] = {
                "observedGeneration": live["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True"}],
            }
            if created and self.fresh_status:
                live["status"] = {}
        self.objects[key] = live
        self.watch(live["kind"], False, copy.deepcopy(live))
        return copy.deepcopy(live)

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, uid: str = ""
    ) -> None:
        live = self.objects.get((namespace, kind, name))
        if live is not None and (not uid or live["metadata"]["uid"] == uid):
            del self.objects[(namespace, kind, name)]
            self.deleted.append((kind, name))
            self.watch(kind, True, live)

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self.patched_pods.append(name)

    async def hand_off_replicas(self, namespace: str, name: str, replicas: int) -> None:
        self.handed_off.append(replicas)

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: dict[str, Any]
    ) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.statuses.append(status)

    def kinds(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (_, k, name), body in self.objects.items() if k == kind}


class Images:
    """ECR: tags v1, v2, v3; a digest's findings as set in ``findings``."""

    def __init__(self) -> None:
        self.findings: dict[str, tuple[Finding, ...]] = {}

    async def digest(self, image: ImageRef) -> str:
        return DIGESTS[image.tag]

    async def scan(self, image: ImageRef, digest: str) -> ScanReport:
        return ScanReport(
            digest, ScanState.COMPLETE, "COMPLETE", findings=self.findings.get(digest, ())
        )


@dataclass
class Models:
    """S3: the latest version of every object is ``latest``."""

    latest: ModelObject = field(default_factory=lambda: ModelObject("etag", "v1", "sha-v1"))
    signed: dict[str, Verdict] = field(default_factory=dict)  # by version id
    checked: list[tuple[str, ...]] = field(default_factory=list)  # the keys each check trusted

    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject:
        if source.version_id:
            return ModelObject("etag", source.version_id, f"sha-{source.version_id}")
        return self.latest

    async def signature(
        self, source: ModelSpec, found: ModelObject, trusted: tuple[str, ...], **_: Any
    ) -> Verdict:
        """Each object version's signature verdict (``signed``); Unsigned when none."""
        self.checked.append(trusted)
        return self.signed.get(found.version_id, verdict.unsigned("the model has no signature"))


@dataclass
class Signatures:
    """The registry's image signatures: each digest's verdict (``signed``); Unsigned when none,
    ``failure`` raised instead while set (a registry that cannot be read)."""

    signed: dict[str, Verdict] = field(default_factory=dict)  # by digest
    checked: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # digest, keys
    failure: Exception | None = None

    async def check(self, image: ImageRef, digest: str, trusted: tuple[str, ...]) -> Verdict:
        self.checked.append((digest, trusted))
        if self.failure is not None:
            raise self.failure
        return self.signed.get(digest, verdict.unsigned("no signature at sha256-….sig"))


@dataclass
class Pods:
    """Pod metrics: each Deployment's pods answer ``answer(deployment)``."""

    answer: Callable[[dict[str, Any]], Scrape] = lambda _: []

    async def sample(self, deployment: Any) -> Scrape:
        return self.answer(deployment)


def scrape(requests: float, predictions: dict[str, float], sha256: str, uid: str) -> Scrape:
    latency = {0.005: requests, float("inf"): requests}
    reading = PodReading(Counts(requests, 0.0, latency, predictions), "m", sha256)
    return [(PodState(uid, uid, ready=True, restarts=0), reading)]


@dataclass
class World:
    store: ObjectStore = field(default_factory=ObjectStore)
    images: Images = field(default_factory=Images)
    models: Models = field(default_factory=Models)
    signatures: Signatures = field(default_factory=Signatures)
    pods: Pods = field(default_factory=Pods)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    registry: Registry = field(default_factory=Registry)
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self.store.watch = self.registry.child_event
        self.reconciler = Reconciler(
            kube=self.store,  # type: ignore[arg-type]
            images=self.images,  # type: ignore[arg-type]
            models=self.models,  # type: ignore[arg-type]
            signatures=self.signatures,  # type: ignore[arg-type]
            pods=self.pods,
            emit=lambda _body, type_, reason, message: self.events.append((type_, reason, message)),
        )

    def retailmodel(self, tag: str = "v1", status: Any = None, **spec: Any) -> Tracked:
        body = {
            "metadata": {
                "name": "prices",
                "namespace": "shop",
                "uid": "rm-uid",
                "generation": spec.pop("generation", 1),
            },
            "spec": {
                "image": {"repository": REPO, "tag": tag},
                "model": {"s3Uri": "s3://models/prices/model.ubj"},
                "replicas": 2,
                **spec,
            },
            "status": status or {},
        }
        tracked, _ = self.registry.observe(body)
        tracked.body = body
        return tracked

    def reconcile(self, tracked: Tracked) -> Any:
        return asyncio.run(self.reconciler.reconcile(tracked))

    @staticmethod
    def condition(tracked: Tracked, type_: str) -> tuple[str, str, str]:
        """A condition as the reconciler last wrote it: (status, reason, message)."""
        written = tracked.written or {}
        found = next(c for c in written.get("conditions", []) if c["type"] == type_)
        return found["status"], found["reason"], found["message"]
