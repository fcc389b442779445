"""The children's first lists on the real API server: the operator's label only, page by page.

kopf's indexes waited for these lists too, at a cost growing with the square of the objects
of the kind, labelled or not: beside 30,000 children the operator made nothing for ten minutes
(retail_operator.listing). Here the API server does the filtering and the pages are followed
to the end.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import Configuration
from tests.integration.operator.apiproxy import ApiProxy
from tests.integration.operator.conftest import Scenario
from tests.support.cluster import LocalCluster

from retail_operator import kube as kube_module
from retail_operator import listing
from retail_operator.children import Children
from retail_operator.handlers import CHILD_SELECTOR
from retail_operator.kube import KubeApi
from retail_operator.objects import Registry

pytestmark = pytest.mark.cluster

LABELLED, OTHERS = 7, 5


def _config_maps(namespace: str) -> str:
    items = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{prefix}-{index}",
                "namespace": namespace,
                "labels": labels,
            },
            "data": {"index": str(index)},
        }
        for prefix, count, labels in (
            ("ours", LABELLED, {"app.kubernetes.io/managed-by": "retail-operator"}),
            ("theirs", OTHERS, {"app.kubernetes.io/managed-by": "someone-else"}),
        )
        for index in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


async def _list(kubeconfig: Path, namespaces: list[str]) -> tuple[Registry, bool, int]:
    configuration = Configuration()
    await kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    kube = KubeApi(configuration)
    registry, listed = Registry(), asyncio.Event()
    try:
        kinds = [("v1", "ConfigMap")]
        await listing.list_children(kube, registry, kinds, namespaces, CHILD_SELECTOR, listed)
    finally:
        await kube.close()
    return registry, listed.is_set(), kube.calls


@pytest.mark.parametrize("scope", ["namespaced", "cluster-wide"])
def test_the_first_lists_file_every_labelled_child_page_by_page_and_nothing_else(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    namespace = local_cluster.test_namespace("listing")
    try:
        local_cluster.apply(_config_maps(namespace))
        monkeypatch.setattr(listing, "PAGE", 2)
        registry, listed, calls = asyncio.run(
            _list(local_cluster.kubeconfig, [namespace] if scope == "namespaced" else [])
        )
        assert listed
        for index in range(LABELLED):
            child = registry.child(namespace, "ConfigMap", f"ours-{index}")
            assert child is not None, f"ours-{index} was not filed"
            assert child["kind"] == "ConfigMap" and child["data"] == {"index": str(index)}
        for index in range(OTHERS):
            assert registry.child(namespace, "ConfigMap", f"theirs-{index}") is None
        if scope == "namespaced":
            assert calls == -(-LABELLED // 2)  # every page followed, none more
    finally:
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


async def _ghost_is_applied_again(
    kubeconfig: Path, scenario: Scenario, owner: dict[str, Any]
) -> bool:
    """A child filed from a list page, deleted before any watch showed it: the next apply of
    the same document must create it again, not trust the page. Whether it exists after."""
    configuration = Configuration()
    await kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    kube = KubeApi(configuration)
    try:
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "listed-only",
                "namespace": scenario.namespace,
                "labels": {"app.kubernetes.io/managed-by": "retail-operator"},
                "ownerReferences": [
                    {
                        "apiVersion": "mlops.retail.io/v1alpha1",
                        "kind": "RetailModel",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "data": {"answer": "42"},
        }
        first = Registry()
        tracked, _ = first.observe(owner)
        await Children(kube).apply(Children(kube).live(tracked), copy.deepcopy(manifest))

        restarted = Registry()  # a new replica: its first list shows the child...
        tracked, _ = restarted.observe(owner)
        restarted.begin_listing()
        async for page in kube.list_pages(
            "v1", "ConfigMap", scenario.namespace, CHILD_SELECTOR, limit=10
        ):
            for body in page:
                restarted.child_listed("ConfigMap", body)
        restarted.end_listing()
        assert restarted.child(scenario.namespace, "ConfigMap", "listed-only") is not None
        # ... and it is deleted before kopf's own list, so no watch ever reports it.
        await kube.delete("v1", "ConfigMap", scenario.namespace, "listed-only")
        await Children(kube).apply(Children(kube).live(tracked), copy.deepcopy(manifest))
        again = await kube.get("v1", "ConfigMap", scenario.namespace, "listed-only")
        return again is not None
    finally:
        await kube.close()


@pytest.mark.aws
def test_a_child_only_a_list_page_showed_is_applied_again_not_trusted(
    scenario: Scenario,
) -> None:
    session_operator = scenario.operator
    session_operator.stop()  # nothing else may re-create or report the child meanwhile
    try:
        scenario.image("v1-clean")
        scenario.apply(scenario.manifest("owner", "v1-clean", scenario.model()))
        owner = scenario.get("retailmodel", "owner")
        assert asyncio.run(_ghost_is_applied_again(scenario.cluster.kubeconfig, scenario, owner))
    finally:
        session_operator.start()


def test_a_list_call_that_hangs_is_given_up_and_listed_again(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first LIST never answers (a hung call through the proxy): it times out, is tried
    again from the start, and the children are filed; until then ``listed`` stays unset."""
    namespace = local_cluster.test_namespace("listing")
    proxy = ApiProxy(local_cluster.kubeconfig, tmp_path)
    try:
        local_cluster.apply(_config_maps(namespace))
        monkeypatch.setattr(kube_module, "REQUEST_TIMEOUT", 2.0)
        monkeypatch.setattr(listing, "RETRY_SECONDS", (0.1,))
        proxy.hold = lambda method, path, body: method == "GET" and path.endswith("/configmaps")
        registry, listed, calls = asyncio.run(_list(proxy.kubeconfig(), [namespace]))
        assert proxy.held.is_set(), "the first list was never held"
        assert listed
        assert calls == 2  # the hung one, then the one answered
        for index in range(LABELLED):
            assert registry.child(namespace, "ConfigMap", f"ours-{index}") is not None
    finally:
        proxy.close()
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
