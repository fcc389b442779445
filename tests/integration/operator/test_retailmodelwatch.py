"""The operator's own list and watch of the RetailModels, on the real API server.

A restart's list files every RetailModel a page at a time (a page in one turn of the event
loop: kopf's watcher took a turn per object, and a new RetailModel waited minutes behind a
10,000-object list in a resync storm), making each due as its body asks; a change made after
the list arrives by the watch; and a RetailModel deleted while the watch was away, with its
version expired, is forgotten by the relist (retail_operator.retailmodelwatch).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.apiproxy import ApiProxy
from tests.integration.operator.test_childwatch import _second_call, _until, informing
from tests.support.cluster import LocalCluster

from retail_operator import informer
from retail_operator.objects import Key, Registry
from retail_operator.retailmodelwatch import RetailModelWatch

pytestmark = pytest.mark.cluster


@dataclass
class Wanted:
    """What the watch asked of the scheduler, by name, in order."""

    hurried: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def hurry(self, key: Key) -> None:
        self.hurried.append(key[1])

    def schedule(self, key: Key, delay: float) -> None:
        assert delay == 0.0
        self.scheduled.append(key[1])

    def forget(self, key: Key) -> None:
        self.forgotten.append(key[1])


def _retailmodel(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x", "tag": "v1"},
            "model": {"s3Uri": "s3://models/prices/model.ubj"},
        },
    }


def _make(local_cluster: LocalCluster, namespace: str, names: list[str]) -> None:
    items = [_retailmodel(namespace, name) for name in names]
    local_cluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def _reconciled(local_cluster: LocalCluster, namespace: str, name: str) -> None:
    """Give ``name`` a status current with its spec, as a reconcile would."""
    local_cluster.kubectl(
        "patch", "retailmodel", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"observedGeneration": 1}}),
    )  # fmt: skip


Script = Callable[[RetailModelWatch, Registry, Wanted], Awaitable[None]]


async def _watching(kubeconfig: Path, namespace: str, script: Script) -> RetailModelWatch:
    registry, wanted = Registry(), Wanted()
    return await informing(
        kubeconfig,
        lambda kube, streams: RetailModelWatch(kube, streams, registry, namespace, wanted),
        lambda watch: script(watch, registry, wanted),
    )


def test_a_list_files_each_page_in_one_turn_and_makes_each_retailmodel_due_as_it_asks(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 RetailModels, listed 50 a page, 3 of them given a current status first. Each is
    made due as its listed body asks: a current status is a restart's look (due now), none or
    an older one a change (hurried). (The session's operator may reconcile these too, so what
    each asks is read from the body as listed.) Filing them took one turn of the event loop
    per page, counted by a task that ticks on every turn; a turn per object took 200."""
    namespace = local_cluster.test_namespace("rmwatch")
    names = [f"model-{index:03}" for index in range(200)]
    try:
        _make(local_cluster, namespace, names)
        for name in names[:3]:
            _reconciled(local_cluster, namespace, name)
        monkeypatch.setattr(informer, "PAGE", 50)
        turns, filed_in, current = 0, set(), set()
        file_listed = RetailModelWatch._file_listed

        def file_listed_counted(watch: RetailModelWatch, body: Any, first: bool) -> Any:
            filed_in.add(turns)
            status = body.get("status") or {}
            if status.get("observedGeneration") == body["metadata"]["generation"]:
                current.add(body["metadata"]["name"])
            return file_listed(watch, body, first)

        monkeypatch.setattr(RetailModelWatch, "_file_listed", file_listed_counted)

        async def tick() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        async def run() -> tuple[RetailModelWatch, Registry, Wanted]:
            ticking = asyncio.create_task(tick())
            found: dict[str, Any] = {}

            async def look(watch: RetailModelWatch, registry: Registry, wanted: Wanted) -> None:
                found["registry"], found["wanted"] = registry, wanted

            try:
                watch = await _watching(local_cluster.kubeconfig, namespace, look)
            finally:
                ticking.cancel()
            return watch, found["registry"], found["wanted"]

        watch, registry, wanted = asyncio.run(run())
        assert watch.kube.calls == 4  # every page followed, none more
        assert len(filed_in) == 4, f"filed over {len(filed_in)} turns of the loop, not 4"
        assert registry.keys(namespace) == {(namespace, name) for name in names}
        assert set(names[:3]) <= current
        assert sorted(wanted.scheduled) == sorted(current)
        assert sorted(wanted.hurried) == sorted(set(names) - current)
        assert wanted.forgotten == []
    finally:
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_an_expired_watch_lists_again_and_forgets_a_retailmodel_deleted_meanwhile(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While the watch is held, one RetailModel is deleted, one made and one deleted and made
    again; the watch opened again is answered 410. The relist is the only news of the delete:
    the one it no longer shows is forgotten, the new one made due, the re-made one forgotten as
    the object it was and made due as the new one; then a delete after the relist arrives by
    the watch."""
    namespace = local_cluster.test_namespace("rmwatch")
    proxy = ApiProxy(local_cluster.kubeconfig, tmp_path)
    try:
        _make(local_cluster, namespace, ["kept", "deleted", "remade"])
        for name in ("kept", "deleted", "remade"):
            _reconciled(local_cluster, namespace, name)
        monkeypatch.setattr(informer, "RETRY_SECONDS", (0.1,))
        monkeypatch.setattr(informer, "WATCH_SECONDS", 2)
        proxy.hold = _second_call(
            lambda method, path: method == "GET" and path.endswith("/retailmodels")
        )

        def meanwhile_on_the_cluster() -> None:
            local_cluster.kubectl("delete", "retailmodel", "deleted", "remade", "-n", namespace)
            _make(local_cluster, namespace, ["made", "remade"])

        async def meanwhile(watch: RetailModelWatch, registry: Registry, wanted: Wanted) -> None:
            remade = registry.get((namespace, "remade"))
            assert remade is not None
            first_uid = remade.uid
            asked_before = len(wanted.hurried) + len(wanted.scheduled)
            await _until("the first watch held", proxy.held.is_set)
            await asyncio.to_thread(meanwhile_on_the_cluster)
            proxy.expire = lambda method, path_qs: "watch=1" in path_qs and proxy.expired == 0
            await _until("listed again", lambda: watch.lists == 2)
            assert proxy.expired == 1
            assert sorted(wanted.forgotten) == ["deleted", "remade"]  # the old remade too
            assert registry.get((namespace, "deleted")) is None
            asked = sorted(wanted.hurried + wanted.scheduled)
            assert len(asked) == asked_before + 2 and asked.count("made") == 1
            assert asked.count("remade") == 2  # first as the object it was, then as the new one
            remade = registry.get((namespace, "remade"))
            assert remade is not None and remade.uid != first_uid
            await asyncio.to_thread(
                local_cluster.kubectl, "delete", "retailmodel", "kept", "-n", namespace
            )
            await _until("a delete after the relist", lambda: "kept" in wanted.forgotten)
            assert registry.get((namespace, "kept")) is None

        asyncio.run(_watching(proxy.kubeconfig(), namespace, meanwhile))
    finally:
        proxy.close()
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
