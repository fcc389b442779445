"""Production operations on the real node, under load through the Service: a drain's evictions
held back by the disruption budget. The same rendering on kwok's pods is in
tests/integration/operator/test_operations.py.

Evictions go through the Eviction API (``pods/eviction``), as ``kubectl drain`` and EKS's
managed node groups send them. A watch of the API server records every change of the ready
pods meanwhile, so a moment with too few pods cannot fall between two polls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from retail_tools import operations
from retail_tools.load import Load
from tests.e2e.conftest import BUCKET, KEY, NAMESPACE, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]


@pytest.fixture
def api(stack: Stack) -> Iterator[client.ApiClient]:
    with operations.api_client(stack.on_node.config.kubeconfig) as api:
        yield api


def serving(stack: Stack, name: str, **spec: Any) -> int:
    """A RetailModel on the real node, Ready, exposed on a NodePort; the port."""
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, f"e2e-{stack.run}", f"s3://{BUCKET}/{KEY}", **spec
    )
    stack.on_node.apply(manifest)
    stack.wait_condition(name, "Ready", "True")
    return stack.on_node.expose(NAMESPACE, name)


@pytest.fixture
def name(stack: Stack) -> Iterator[str]:
    name = f"ops-{uuid.uuid4().hex[:5]}"
    try:
        yield name
    finally:
        stack.on_node.remove(NAMESPACE, name, wait=True)


def test_a_drain_evicts_every_pod_in_turn_within_the_budget_with_no_failed_request(
    stack: Stack, api: client.ApiClient, name: str
) -> None:
    port = serving(stack, name, replicas=3)
    budget = stack.kubectl.get_json("poddisruptionbudget", name, "-n", NAMESPACE)
    assert budget["spec"]["maxUnavailable"] == 1
    pods = [p["metadata"]["name"] for p in stack.running_pods(name)]
    assert len(pods) == 3
    with (
        operations.ReadyPods(api, NAMESPACE, name) as ready,
        Load(port, workers=4, max_seconds=600) as load,
    ):
        steady = ready.wait_for(3, timeout=30)
        evictions = operations.evict_in_turn(operations.Evictions(api), NAMESPACE, pods)
        replaced = ready.wait_for(3, timeout=180, without=pods)
        time.sleep(2)  # a moment of load on the replacements alone
    assert evictions.evicted == pods, evictions.summary()
    # After each eviction the next pod was asked at once: the budget refused it (HTTP 429)
    # until the evicted pod's replacement was ready.
    followers = [a for a in evictions.attempts if a.right_after_an_eviction]
    assert len(followers) == 2 and all(a.status == operations.REFUSED for a in followers), (
        evictions.attempts
    )
    assert {a.status for a in evictions.attempts} == {operations.EVICTED, operations.REFUSED}
    assert ready.fewest(since=steady) == 2, ready.counts  # never fewer than maxUnavailable allows
    assert not set(pods) & {p["metadata"]["name"] for p in stack.running_pods(name)}
    assert load.report.failed == 0, load.report.summary()
    print(
        f"\ndrain under load: {evictions.summary()}; every pod replaced {replaced:.1f}s after "
        f"the watch began; ready pods over time {ready.counts}; load {load.report.summary()}"
    )
