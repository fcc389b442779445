"""High availability against the real API server: two operator processes share one Lease;
exactly one reconciles; when the leader is killed mid-rollout the standby takes over within
the lease duration and converges everything, with nothing duplicated; a replica that cannot
list its children never takes the Lease from one that can. And the metrics move."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.operator.apiproxy import ApiProxy
from tests.integration.operator.conftest import OperatorProcess, Scenario
from tests.support.aws import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

LEASE_SECONDS = 4.0
RETRY_SECONDS = 0.5


def replica(
    scenario: Scenario, name: str, lease: str, folder: Path, kubeconfig: Path | None = None
) -> OperatorProcess:
    port = free_port()
    through = {"KUBECONFIG": str(kubeconfig)} if kubeconfig is not None else {}
    env = (
        scenario.operator.env
        | through
        | {
            "POD_NAME": name,
            "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
            "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
            "RETAIL_OPERATOR_LEASE_NAME": lease,
            "RETAIL_OPERATOR_LEASE_NAMESPACE": scenario.namespace,
            "RETAIL_OPERATOR_LEASE_DURATION_SECONDS": str(LEASE_SECONDS),
            "RETAIL_OPERATOR_RENEW_DEADLINE_SECONDS": str(LEASE_SECONDS * 0.75),
            "RETAIL_OPERATOR_RETRY_PERIOD_SECONDS": str(RETRY_SECONDS),
        }
    )
    return OperatorProcess(env, folder / f"{name}.log", port)


@pytest.fixture
def replicas(scenario: Scenario, tmp_path: Path) -> Iterator[tuple[OperatorProcess, ...]]:
    """Two replicas of the operator instead of the session's one (which would reconcile too)."""
    scenario.operator.stop()
    lease = f"failover-{scenario.namespace}"
    pair = tuple(replica(scenario, name, lease, tmp_path) for name in ("replica-a", "replica-b"))
    try:
        yield pair
    finally:
        for process in pair:
            process.stop()
        scenario.operator.start()


def holder(scenario: Scenario) -> str:
    lease = scenario.get("lease", f"failover-{scenario.namespace}") or {}
    return str(lease.get("spec", {}).get("holderIdentity") or "")


def test_the_standby_takes_over_a_killed_leader_and_converges(
    scenario: Scenario, replicas: tuple[OperatorProcess, OperatorProcess]
) -> None:
    leader, standby = replicas
    leader.start()
    scenario.wait_for("replica-a to lead", lambda: holder(scenario).startswith("replica-a_"))
    standby.start()
    assert standby.metrics()["retail_operator_leader"] == 0
    assert leader.metrics()["retail_operator_leader"] == 1

    model = scenario.model()
    scenario.image("v1")
    names = [f"model-{n}" for n in range(3)]
    for name in names:
        scenario.apply(scenario.manifest(name, "v1", model))
    for name in names:
        scenario.wait_condition(name, "Ready", "True")
    standby_reconciles = standby.metrics().get('retail_operator_reconciles_total{result="ok"}', 0)
    assert standby_reconciles == 0  # a standby watches but never reconciles

    second = scenario.image("v2")
    for name in names:
        scenario.apply(scenario.manifest(name, "v2", model))  # a rollout begins…
    leader.kill()  # …and the leader dies under it, without releasing the lease
    killed = time.monotonic()
    scenario.wait_for(
        "replica-b to take over",
        lambda: holder(scenario).startswith("replica-b_"),
        timeout=LEASE_SECONDS * 4,
    )
    takeover = time.monotonic() - killed
    print(f"\ntakeover after the leader was killed: {takeover:.1f}s (lease {LEASE_SECONDS}s)")
    assert takeover <= LEASE_SECONDS + 4 * RETRY_SECONDS + 2  # within the lease, plus polling

    scenario.apply(scenario.manifest("model-new", "v2", model))  # work that only b can do
    for name in [*names, "model-new"]:
        scenario.wait_condition(name, "Ready", "True", timeout=60)
        assert str(scenario.deployment_image(name)).endswith(second)
    deployments = scenario.cluster.get_json("deployments", "-n", scenario.namespace)["items"]
    services = scenario.cluster.get_json("services", "-n", scenario.namespace)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted([*names, "model-new"])
    assert len(services) == 4
    after = standby.metrics()
    assert after["retail_operator_leader"] == 1
    assert after['retail_operator_reconciles_total{result="ok"}'] >= 4


def test_the_metrics_move_when_reconciles_happen(scenario: Scenario) -> None:
    before = scenario.operator.metrics()
    scenario.image("v1")
    scenario.image("v2-bad", findings=[("CVE-2026-0003", "CRITICAL")])
    model = scenario.model()
    scenario.apply(scenario.manifest("good", "v1", model))
    scenario.apply(scenario.manifest("bad", "v2-bad", model))
    scenario.wait_condition("good", "Ready", "True")
    scenario.wait_condition("bad", "Ready", "False", "VulnerabilitiesFound")
    after = scenario.operator.metrics()
    ok = 'retail_operator_reconciles_total{result="ok"}'
    assert after[ok] >= before.get(ok, 0) + 2
    assert after["retail_operator_reconcile_duration_seconds_count"] > before.get(
        "retail_operator_reconcile_duration_seconds_count", 0
    )
    assert after["retail_operator_images_blocked"] >= 1
    describe = 'retail_operator_aws_calls_total{operation="DescribeImages",service="ecr"}'
    assert after.get(describe, 0) > before.get(describe, 0)
    assert after["retail_operator_leader"] == 1


def test_a_replica_that_cannot_list_its_children_never_takes_the_lease(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Replica a reaches the API server through a proxy that refuses its first list of the
    Deployments (403): it retries as a standby, and replica b, started after it, leads and
    reconciles; once a's list is answered and b has gone, a leads. Taking the Lease at once, a
    would have led and looked at nothing, and b would have waited behind it."""
    scenario.operator.stop()
    lease = f"failover-{scenario.namespace}"
    proxy = ApiProxy(scenario.cluster.kubeconfig, tmp_path)
    # The labelled list of the children only.
    proxy.refuse = lambda method, path: (
        method == "GET"
        and path.startswith("/apis/apps/v1/deployments?")
        and "labelSelector=" in path
    )
    blind = replica(scenario, "replica-a", lease, tmp_path, kubeconfig=proxy.kubeconfig())
    healthy = replica(scenario, "replica-b", lease, tmp_path)
    try:
        blind.start()
        scenario.wait_for("replica a's list refused twice", lambda: proxy.refused >= 2)
        healthy.start()
        scenario.wait_for("replica-b to lead", lambda: holder(scenario).startswith("replica-b_"))
        scenario.image("v1")
        scenario.apply(scenario.manifest("seen", "v1", scenario.model()))
        scenario.wait_condition("seen", "Ready", "True")
        assert blind.metrics()["retail_operator_leader"] == 0
        assert not blind.ready()  # a rolling update would wait for it, not replace b with it
        assert healthy.ready()
        assert holder(scenario).startswith("replica-b_")
        # Its list answered again, a is eligible: with b shut down it leads and reconciles.
        proxy.refuse = None
        healthy.stop()  # releases the Lease
        scenario.wait_for("replica-a to lead", lambda: holder(scenario).startswith("replica-a_"))
        scenario.apply(scenario.manifest("seen-by-a", "v1", scenario.model()))
        scenario.wait_condition("seen-by-a", "Ready", "True")
        assert blind.metrics()["retail_operator_leader"] == 1
        assert blind.ready()
    finally:
        healthy.stop()
        blind.stop()
        proxy.close()
        scenario.operator.start()
