"""Production operations on the real node, under load through the Service: a drain's evictions
held back by the disruption budget, and the autoscaler taking a RetailModel from one pod to
three and back. The same rendering on kwok's pods is in
tests/integration/operator/test_operations.py.

Evictions go through the Eviction API (``pods/eviction``), as ``kubectl drain`` and EKS's
managed node groups send them; the CPU the autoscaler scales on is the pods' own, read by the
metrics-server ``retailctl cluster up`` starts beside the node. Watches of the API server
record every change of the ready pods and of the RetailModel's status meanwhile, so a moment
with too few pods or a flapping condition cannot fall between two polls. The figures (time to
scale, p99, refused evictions) are printed; docs/operator.md and bench/RESULTS.md keep them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from retail_tools import operations
from retail_tools.load import Load
from tests.e2e.conftest import BUCKET, KEY, NAMESPACE, Stack
from tests.support.argocd_health import argocd_binary, assess_object

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

MAX_REPLICAS = 3  # what the two-core node holds beside the operator and its neighbours
SCALE_UP_SECONDS = 180  # ramp start → three ready pods: metrics (15 s), the HPA (15 s), pods
SCALE_DOWN_SECONDS = 240  # load stopped → one pod: metrics, the 15 s window, the HPA, preStop


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


def test_load_scales_one_pod_to_three_and_back_with_truthful_status(
    stack: Stack, api: client.ApiClient, name: str, tmp_path: Path
) -> None:
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "targetCPUUtilizationPercentage": 50,
        "scaleDownStabilizationSeconds": 15,
    }
    port = serving(
        stack, name, replicas=1, autoscaling=autoscaling,
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}},
    )  # fmt: skip
    printed: set[tuple[str, str]] = set()  # (AVAILABLE, DESIRED) as `kubectl get rmodel` shows
    with (
        operations.StatusLog(api, NAMESPACE, name) as status,
        operations.ReadyPods(api, NAMESPACE, name) as ready,
    ):
        steady = ready.wait_for(1, timeout=30)
        with Load(port, workers=4, ramp_seconds=20, max_seconds=600) as load:
            ramp = ready.now()
            while ready.current < MAX_REPLICAS and ready.now() - ramp < SCALE_UP_SECONDS:
                printed.add(columns(stack, name))
                time.sleep(1)
            scaled_up = ready.wait_for(MAX_REPLICAS, timeout=5) - ramp
            time.sleep(5)  # load on the three pods
        with Load(port, workers=1, pause=0.2, max_seconds=600) as trickle:
            quiet = ready.now()
            while ready.current > 1 and ready.now() - quiet < SCALE_DOWN_SECONDS:
                printed.add(columns(stack, name))
                time.sleep(1)
            scaled_down = ready.wait_for(1, timeout=5) - quiet
            printed.add(columns(stack, name))
        time.sleep(2)  # the operator's last status write
    report, calm = load.report, trickle.report
    assert report.failed == 0 and calm.failed == 0, (report.summary(), calm.summary())
    # The printer columns follow the autoscaler: desired ahead of available while it scales.
    assert ("1", str(MAX_REPLICAS)) in printed or ("2", str(MAX_REPLICAS)) in printed, printed
    assert (str(MAX_REPLICAS), str(MAX_REPLICAS)) in printed and ("1", "1") in printed, printed
    # Scaling is no outage and no rollout: Ready and Available never left True.
    for kind in ("Ready", "Available"):
        assert {state for _, state in status.transitions(kind)} <= {
            ("True", "Ready"), ("True", "MinimumReplicasAvailable")
        }, (kind, status.transitions(kind))  # fmt: skip
    # And Argo CD, judging each state the RetailModel went through, saw it Healthy throughout.
    argocd = argocd_binary()
    verdicts = {
        assess_object(argocd, change.body, tmp_path, f"state-{number}")
        for number, change in enumerate(status.changes)
    }
    assert {verdict for verdict, _ in verdicts} == {"Healthy"}, verdicts
    assert ready.fewest(since=steady) >= 1, ready.counts
    print(
        f"\nautoscaling 1 → {MAX_REPLICAS}: {scaled_up:.1f}s from the ramp's start to "
        f"{MAX_REPLICAS} ready pods; back to 1 in {scaled_down:.1f}s after the load stopped; "
        f"load {report.summary()}; trickle while scaling down {calm.summary()}; "
        f"replicas in status {status.replica_counts()}; ready pods {ready.counts}"
    )


def columns(stack: Stack, name: str) -> tuple[str, str]:
    """The AVAILABLE and DESIRED columns of `kubectl get rmodel`, as a person reads them."""
    header, row = stack.kubectl.output("get", "rmodel", name, "-n", NAMESPACE).splitlines()[:2]
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    cells = {
        header[start:end].strip(): row[start:end].strip()
        for start, end in zip(starts, [*starts[1:], None], strict=True)
    }
    return cells.get("AVAILABLE", ""), cells.get("DESIRED", "")
