"""The operator's own lists and watches of its children, on the real API server.

The lists ask for the operator's label and follow every page; the watch starts from the list's
resourceVersion, is opened again from the last version seen when it goes silent, and when that
version has expired (410) the kind is listed again and what the watch missed (a delete above
all) is reported (retail_operator.informer, retail_operator.childwatch).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import Configuration
from tests.integration.operator.apiproxy import ApiProxy
from tests.support.cluster import LocalCluster

from retail_operator import informer
from retail_operator import kube as kube_module
from retail_operator.childwatch import ChildWatch
from retail_operator.handlers import CHILD_SELECTOR
from retail_operator.informer import Informer
from retail_operator.kube import KubeApi
from retail_operator.objects import Registry

pytestmark = pytest.mark.cluster

LABELLED, OTHERS = 7, 5
OURS = {"app.kubernetes.io/managed-by": "retail-operator"}
BLOB = 180_000  # bytes: a large child, one watch line of about 360 KB (its last-applied too)


def _config_map(namespace: str, name: str, labels: dict[str, str], index: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"index": index},
    }


def _config_maps(namespace: str) -> str:
    items = [
        _config_map(namespace, f"{prefix}-{index}", labels, str(index))
        for prefix, count, labels in (
            ("ours", LABELLED, OURS),
            ("theirs", OTHERS, {"app.kubernetes.io/managed-by": "someone-else"}),
        )
        for index in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


async def _client(kubeconfig: Path) -> KubeApi:
    configuration = Configuration()
    await kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return KubeApi(configuration)


InformerT = TypeVar("InformerT", bound=Informer)


async def informing(
    kubeconfig: Path,
    build: Callable[[KubeApi, KubeApi], InformerT],
    script: Callable[[InformerT], Awaitable[None]],
) -> InformerT:
    """Run the informer ``build`` makes (from a client for its lists and one for its watches)
    until its first list is in and then ``script`` is done."""
    kube, streams = await _client(kubeconfig), await _client(kubeconfig)
    watch = build(kube, streams)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.synced.wait(), 60)
        await script(watch)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.close()
        await streams.close()
    return watch


Reported = list[tuple[str, bool, str]]  # (name, deleted, data's index) as ``react`` saw them
Script = Callable[[ChildWatch, Registry, Reported], Awaitable[None]]


async def _watching(kubeconfig: Path, namespace: str | None, script: Script) -> ChildWatch:
    """Watch ConfigMaps (in ``namespace``, or everywhere) until ``script`` is done."""
    registry, reported = Registry(), []

    def react(kind: str, deleted: bool, body: dict[str, Any]) -> None:
        assert kind == "ConfigMap"
        reported.append((body["metadata"]["name"], deleted, body.get("data", {}).get("index")))

    def build(kube: KubeApi, streams: KubeApi) -> ChildWatch:
        selector = CHILD_SELECTOR
        return ChildWatch(kube, streams, registry, "v1", "ConfigMap", namespace, selector, react)

    return await informing(kubeconfig, build, lambda watch: script(watch, registry, reported))


async def _until(what: str, check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f}s"
        await asyncio.sleep(0.1)


@pytest.fixture
def proxied(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[str, ApiProxy]]:
    """A namespace with the ConfigMaps, and a proxy in front of the API server; retries
    0.1 s apart."""
    namespace = local_cluster.test_namespace("childwatch")
    proxy = ApiProxy(local_cluster.kubeconfig, tmp_path)
    try:
        local_cluster.apply(_config_maps(namespace))
        monkeypatch.setattr(informer, "RETRY_SECONDS", (0.1,))
        yield namespace, proxy
    finally:
        proxy.close()
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def _index(registry: Registry, namespace: str, name: str) -> str | None:
    child = registry.child(namespace, "ConfigMap", name)
    return None if child is None else str(child["data"]["index"])


@pytest.mark.parametrize("scope", ["namespaced", "cluster-wide"])
def test_the_first_lists_file_every_labelled_child_page_by_page_and_nothing_else(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    namespace = local_cluster.test_namespace("childwatch")
    try:
        local_cluster.apply(_config_maps(namespace))
        monkeypatch.setattr(informer, "PAGE", 2)
        found: dict[str, Any] = {}

        async def look(watch: ChildWatch, registry: Registry, reported: Reported) -> None:
            found["calls"] = watch.kube.calls
            found["ours"] = {
                f"ours-{i}": _index(registry, namespace, f"ours-{i}") for i in range(7)
            }
            found["theirs"] = [_index(registry, namespace, f"theirs-{i}") for i in range(5)]
            found["reported"] = list(reported)

        asyncio.run(
            _watching(local_cluster.kubeconfig, namespace if scope == "namespaced" else None, look)
        )
        assert found["ours"] == {f"ours-{i}": str(i) for i in range(LABELLED)}
        assert found["theirs"] == [None] * OTHERS
        assert found["reported"] == []  # the first list is no news to react to
        if scope == "namespaced":
            assert found["calls"] == -(-LABELLED // 2)  # every page followed, none more
    finally:
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_list_call_that_hangs_is_given_up_and_listed_again(
    proxied: tuple[str, ApiProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first LIST never answers (a hung call through the proxy): it times out, is tried
    again from the start, and the children are filed; until then nothing is synced."""
    namespace, proxy = proxied
    monkeypatch.setattr(kube_module, "REQUEST_TIMEOUT", 2.0)
    proxy.hold = lambda method, path, body: method == "GET" and path.endswith("/configmaps")
    found: dict[str, Any] = {}

    async def look(watch: ChildWatch, registry: Registry, reported: Reported) -> None:
        found["calls"] = watch.kube.calls
        found["ours"] = [_index(registry, namespace, f"ours-{i}") for i in range(LABELLED)]

    watch = asyncio.run(_watching(proxy.kubeconfig(), namespace, look))
    assert proxy.held.is_set(), "the first list was never held"
    assert found["calls"] == 2  # the hung one, then the one answered
    assert watch.lists == 1
    assert found["ours"] == [str(i) for i in range(LABELLED)]


def _second_call(matches: Callable[[str, str], bool]) -> Callable[[str, str, bytes], bool]:
    """A ``hold`` for the second matching request only (the list comes first, then the
    watch: the proxy's predicates see the path without its query)."""
    seen = 0

    def hold(method: str, path: str, body: bytes) -> bool:
        nonlocal seen
        if not matches(method, path):
            return False
        seen += 1
        return seen == 2

    return hold


def _configmaps(method: str, path: str) -> bool:
    return method == "GET" and path.endswith("/configmaps")


def _meanwhile(local_cluster: LocalCluster, namespace: str) -> None:
    """What happens while the watch is not listening: one child deleted, one changed, one
    made (a large one), and one of someone else's made (never to be filed)."""
    local_cluster.kubectl("delete", "configmap", "ours-0", "-n", namespace)
    local_cluster.kubectl(
        "patch", "configmap", "ours-1", "-n", namespace, "--type=merge", "-p",
        json.dumps({"data": {"index": "changed"}}),
    )  # fmt: skip
    big = _config_map(namespace, "ours-new", OURS, "new")
    big["data"]["blob"] = "x" * BLOB
    made = [
        big,
        _config_map(namespace, "theirs-new", {"app.kubernetes.io/managed-by": "x"}, "new"),
    ]
    local_cluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": made}))


def test_a_watch_that_goes_silent_is_opened_again_from_the_last_version(
    local_cluster: LocalCluster, proxied: tuple[str, ApiProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first watch is held unanswered (a connection gone silent): it is given up after
    its read timeout and opened again from the list's version, so the delete, the change and
    the new child made meanwhile all arrive, without listing again."""
    namespace, proxy = proxied
    monkeypatch.setattr(informer, "WATCH_SECONDS", 2)  # silent for 3 s: given up
    proxy.hold = _second_call(_configmaps)

    async def meanwhile(watch: ChildWatch, registry: Registry, reported: Reported) -> None:
        await _until("the first watch held", proxy.held.is_set)
        await asyncio.to_thread(_meanwhile, local_cluster, namespace)
        await _until(
            "the changes filed",
            lambda: (
                _index(registry, namespace, "ours-0") is None
                and _index(registry, namespace, "ours-1") == "changed"
                and _index(registry, namespace, "ours-new") == "new"
            ),
        )
        assert _index(registry, namespace, "theirs-new") is None
        assert ("ours-0", True, "0") in reported
        assert ("ours-1", False, "changed") in reported
        made = registry.child(namespace, "ConfigMap", "ours-new")
        assert made is not None and len(made["data"]["blob"]) == BLOB

    watch = asyncio.run(_watching(proxy.kubeconfig(), namespace, meanwhile))
    assert watch.lists == 1  # the watch resumed; nothing was listed again


def test_an_expired_watch_lists_again_and_reports_the_delete_it_missed(
    local_cluster: LocalCluster, proxied: tuple[str, ApiProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the watch is held, children change; the watch opened again is answered 410
    (its version expired, as after an etcd compaction). The relist is the only news of the
    delete: the child it no longer shows is forgotten and reported deleted, the others filed
    and reported, and the watch then goes on from the new list's version."""
    namespace, proxy = proxied
    monkeypatch.setattr(informer, "WATCH_SECONDS", 2)
    proxy.hold = _second_call(_configmaps)

    async def meanwhile(watch: ChildWatch, registry: Registry, reported: Reported) -> None:
        await _until("the first watch held", proxy.held.is_set)
        await asyncio.to_thread(_meanwhile, local_cluster, namespace)
        proxy.expire = lambda method, path_qs: "watch=1" in path_qs and proxy.expired == 0
        await _until("listed again", lambda: watch.lists == 2)
        assert proxy.expired == 1
        assert _index(registry, namespace, "ours-0") is None
        assert ("ours-0", True, "0") in reported
        assert ("ours-1", False, "changed") in reported
        assert ("ours-new", False, "new") in reported
        assert _index(registry, namespace, "theirs-new") is None
        await asyncio.to_thread(
            local_cluster.kubectl,
            "patch", "configmap", "ours-2", "-n", namespace, "--type=merge", "-p",
            json.dumps({"data": {"index": "after"}}),
        )  # fmt: skip
        await _until(
            "a change after the relist filed",
            lambda: _index(registry, namespace, "ours-2") == "after",
        )

    asyncio.run(_watching(proxy.kubeconfig(), namespace, meanwhile))


def test_a_kind_served_only_later_is_listed_within_seconds(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind whose CRD is not there yet (a RetailModel CRD installed after the operator, or
    deleted and made again) lists as empty; once the CRD is made, the kind is listed again
    within NOT_SERVED_SECONDS (10 s), and its objects filed and watched. It was 5 minutes."""
    group = f"t{uuid.uuid4().hex[:8]}.retail.io"
    monkeypatch.setitem(
        kube_module._PATHS,
        (f"{group}/v1", "Widget"),
        f"/apis/{group}/v1/namespaces/{{namespace}}/widgets/{{name}}",
    )
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "first", "labels": OURS},
    }
    namespace = local_cluster.test_namespace("childwatch")

    async def meanwhile(watch: ChildWatch, registry: Registry, reported: Reported) -> None:
        assert watch.lists == 1 and watch.count == 0 and not watch.served
        await asyncio.to_thread(local_cluster.apply, json.dumps(crd))
        await asyncio.to_thread(
            local_cluster.kubectl,
            "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s",
        )  # fmt: skip
        await asyncio.to_thread(local_cluster.apply, json.dumps(widget), namespace)
        await _until(
            "the widget filed",
            lambda: registry.child(namespace, "Widget", "first") is not None,
            seconds=25,  # NOT_SERVED_SECONDS (10 s) and the lists; it was 300 s
        )
        assert watch.served and watch.lists >= 2
        assert ("first", False, None) in reported

    registry, reported = Registry(), []

    def build(kube: KubeApi, streams: KubeApi) -> ChildWatch:
        def react(kind: str, deleted: bool, body: dict[str, Any]) -> None:
            reported.append((body["metadata"]["name"], deleted, None))

        api_version = f"{group}/v1"
        return ChildWatch(
            kube, streams, registry, api_version, "Widget", namespace, CHILD_SELECTOR, react
        )

    try:
        asyncio.run(
            informing(
                local_cluster.kubeconfig, build, lambda watch: meanwhile(watch, registry, reported)
            )
        )
    finally:
        local_cluster.kubectl("delete", "crd", f"widgets.{group}", "--ignore-not-found")
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
