"""The children's first lists on the real API server: the operator's label only, page by page.

kopf's indexes waited for these lists too, at a cost growing with the square of the objects
of the kind, labelled or not: beside 30,000 children the operator made nothing for ten minutes
(retail_operator.listing). Here the API server does the filtering and the pages are followed
to the end.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import Configuration
from tests.support.cluster import LocalCluster

from retail_operator import listing
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
