"""Services are created a few at a time, a change's first: the API server allocates their
ClusterIPs one after another, so sending every create at once only queues them there, past
their deadline. Other children, and Services that exist, are applied as they come."""

from __future__ import annotations

import asyncio
from typing import Any

from retail_operator.children import Children
from retail_operator.lanes import URGENT
from retail_operator.objects import Registry, Tracked

OWNER_UID = "0b5e7c1e-0000-4000-8000-000000000001"


class SlowApiServer:
    """Answers each apply after ``release`` is set; counts the applies in flight by kind."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.busy: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.order: list[str] = []

    async def get(self, *args: Any, **kwargs: Any) -> None:
        return None  # nothing there yet

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        self.busy[kind] = self.busy.get(kind, 0) + 1
        self.peak[kind] = max(self.peak.get(kind, 0), self.busy[kind])
        self.order.append(name)
        await self.release.wait()
        self.busy[kind] -= 1
        metadata = {**manifest["metadata"], "uid": f"uid-{name}", "resourceVersion": "1"}
        return {**manifest, "metadata": metadata}


def _tracked(registry: Registry, name: str) -> Tracked:
    meta = {"name": name, "namespace": "shop", "uid": OWNER_UID, "generation": 1}
    tracked, _ = registry.observe({"metadata": meta, "spec": {}})
    return tracked


def _child(kind: str, name: str) -> dict[str, Any]:
    owner = {"kind": "RetailModel", "name": name, "uid": OWNER_UID, "controller": True}
    metadata = {"name": name, "namespace": "shop", "ownerReferences": [owner]}
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata, "spec": {"ports": []}}


async def _apply(
    children: Children, registry: Registry, kind: str, name: str, urgent: bool
) -> None:
    URGENT.set(urgent)
    await children.apply(children.live(_tracked(registry, name)), _child(kind, name))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _creates(kinds: tuple[str, ...], count: int) -> dict[str, int]:
    server, registry = SlowApiServer(), Registry()
    children = Children(server, service_creates=3)  # type: ignore[arg-type]
    applies = [
        asyncio.create_task(_apply(children, registry, kind, f"{kind.lower()}-{i}", False))
        for kind in kinds
        for i in range(count)
    ]
    await _settle()
    server.release.set()
    await asyncio.gather(*applies)
    return server.peak


def test_at_most_so_many_services_are_created_at_once() -> None:
    assert asyncio.run(_creates(("Service",), 20)) == {"Service": 3}


def test_other_children_are_not_held_back() -> None:
    peak = asyncio.run(_creates(("Service", "ConfigMap"), 20))
    assert peak == {"Service": 3, "ConfigMap": 20}


async def _a_change_among_a_rollout() -> list[str]:
    server, registry = SlowApiServer(), Registry()
    children = Children(server, service_creates=1)  # type: ignore[arg-type]
    looks = [
        asyncio.create_task(_apply(children, registry, "Service", f"look-{i}", False))
        for i in range(5)
    ]
    await _settle()  # look-0 is being created, the other four wait
    change = asyncio.create_task(_apply(children, registry, "Service", "change", True))
    await _settle()
    server.release.set()
    await asyncio.gather(*looks, change)
    return server.order


def test_a_changes_service_is_created_before_those_already_waiting() -> None:
    assert asyncio.run(_a_change_among_a_rollout())[:2] == ["look-0", "change"]


async def _an_existing_service_while_creates_wait() -> bool:
    server, registry = SlowApiServer(), Registry()
    children = Children(server, service_creates=1)  # type: ignore[arg-type]
    creating = asyncio.create_task(_apply(children, registry, "Service", "new", False))
    await _settle()  # holds the one place, until released
    existing = _child("Service", "old")
    existing["metadata"].update(uid="uid-old", resourceVersion="7")
    registry.child_event("Service", False, existing)
    update = asyncio.create_task(_apply(children, registry, "Service", "old", False))
    await _settle()
    updating = "old" in server.order  # sent while the create still holds its place
    server.release.set()
    await asyncio.gather(creating, update)
    return updating


def test_a_service_that_exists_is_applied_without_waiting_for_the_creates() -> None:
    assert asyncio.run(_an_existing_service_while_creates_wait())
