"""A child's watch event that waited on the RetailModel's lock while a reconcile rolled out a
new image must judge the child by what that reconcile recorded, not by the body it was handed
before the wait: else it "reverts drift" back to the old image (seen on the real node: the
rollout flip-flopped between two digests at every resync and never became Ready)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from retail_operator.facts import Finding, ModelObject, ScanReport, ScanState
from retail_operator.podmetrics import Scrape
from retail_operator.progressive import CanaryRollout
from retail_operator.reconcile import Reconciler
from retail_operator.spec import ImageRef, ModelSpec

REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
OLD, NEW = "sha256:" + "0" * 64, "sha256:" + "1" * 64


@dataclass
class Kube:
    """Applies by echoing the manifest back (with a status for Deployments) and records it."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # holds the status write while set up

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        live = {**manifest, "metadata": {**manifest["metadata"], "generation": 1}}
        if manifest["kind"] == "Deployment":
            replicas = manifest["spec"]["replicas"]
            live["status"] = {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True"}],
            }
        return live

    async def get(self, *_: str) -> Any:
        return None

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.statuses.append(status)

    async def delete(self, *_: str) -> None:
        raise AssertionError("nothing to delete under the Immediate strategy")


class Images:
    async def digest(self, image: ImageRef) -> str:
        return NEW if image.tag == "v2" else OLD

    async def scan(self, image: ImageRef, digest: str) -> ScanReport:
        return ScanReport(digest, ScanState.COMPLETE, "COMPLETE", findings=(Finding("x", "LOW"),))


class Models:
    async def head(self, source: ModelSpec) -> ModelObject:
        return ModelObject("etag", "v1", "")


class NoMetrics:
    async def sample(self, namespace: str, selector: str) -> Scrape:
        return []


def body(tag: str, deployed: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "prices", "namespace": "shop", "uid": "uid-1", "generation": 2},
        "spec": {"image": {"repository": REPO, "tag": tag}, "model": {"s3Uri": "s3://b/m.ubj"}},
        "status": {
            "observedGeneration": 1,
            "deployedImage": f"{REPO}@{deployed}",
            "deployedModel": {"s3Uri": "s3://b/m.ubj", "versionId": "", "sha256": ""},
        },
    }


def test_a_child_event_queued_behind_a_rollout_does_not_revert_it() -> None:
    async def scenario() -> tuple[Kube, list[str]]:
        kube = Kube(gate=asyncio.Event())
        events: list[str] = []
        reconciler = Reconciler(
            kube=kube,  # type: ignore[arg-type]
            images=Images(),  # type: ignore[arg-type]
            models=Models(),  # type: ignore[arg-type]
            emit=lambda _body, _type, reason, _message: events.append(reason),
            canary=CanaryRollout(kube, NoMetrics(), lambda *_: None),  # type: ignore[arg-type]
        )
        handed = body("v2", deployed=OLD)  # what the watch handler holds: the old status
        rollout = asyncio.create_task(reconciler.reconcile(handed))
        while not any(m["kind"] == "Deployment" for m in kube.applied):
            await asyncio.sleep(0)  # the new Deployment is applied; its status write is held
        live = next(m for m in reversed(kube.applied) if m["kind"] == "Deployment")
        child = asyncio.create_task(reconciler.child_changed(handed, "Deployment", "prices", live))
        await asyncio.sleep(0.01)  # the child event now waits on the RetailModel's lock
        assert kube.gate is not None
        kube.gate.set()
        await asyncio.gather(rollout, child)
        return kube, events

    kube, events = asyncio.run(scenario())
    deployments = [m for m in kube.applied if m["kind"] == "Deployment"]
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments]
    assert images == [f"{REPO}@{NEW}"], "the child event re-applied another image"
    assert "DriftReverted" not in events
    assert all(s.get("deployedImage", f"{REPO}@{NEW}") == f"{REPO}@{NEW}" for s in kube.statuses)
