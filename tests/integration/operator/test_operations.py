"""Production operations on the real API server (kwok's nodes and pods): disruption budgets,
the autoscaler taking the replica count over without a reset, and replicas spread across
zones. The same under load on the real node is in tests/e2e/test_operations_real_pods.py."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from tests.integration.operator.conftest import Scenario

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

ZONES = {"kwok-node-0": "zone-a", "kwok-node-1": "zone-b", "kwok-node-2": "zone-c"}


def pods(scenario: Scenario, name: str) -> list[dict[str, Any]]:
    listing = scenario.cluster.get_json(
        "pods", "-n", scenario.namespace, "-l", f"mlops.retail.io/retailmodel={name}"
    )
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


def test_two_replicas_or_more_get_a_disruption_budget_that_follows_the_spec(
    scenario: Scenario,
) -> None:
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model(), replicas=3)
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    budget = scenario.wait_for(
        "the budget counted by its controller",
        lambda: (
            (b := scenario.get("poddisruptionbudget", "prices"))
            and b.get("status", {}).get("expectedPods") == 3
            and b
        ),
    )
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["status"]["disruptionsAllowed"] == 1
    assert budget["metadata"]["ownerReferences"][0]["kind"] == "RetailModel"
    manifest["spec"]["replicas"] = 1
    scenario.apply(manifest)
    scenario.wait_for(
        "the budget removed at one replica",
        lambda: scenario.get("poddisruptionbudget", "prices") is None,
    )


def test_autoscaling_takes_the_count_over_without_resetting_it(scenario: Scenario) -> None:
    """With the operator the sole owner of spec.replicas, leaving the field out of an apply
    would drop a running Deployment to one replica; the count is handed over first."""
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model(), replicas=3)
    manifest["spec"]["resources"] = {"requests": {"cpu": "100m"}}
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    manifest["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 5}
    scenario.apply(manifest)
    autoscaler = scenario.wait_for(
        "the autoscaler", lambda: scenario.get("horizontalpodautoscaler", "prices")
    )
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "prices"
    scenario.wait_condition("prices", "Ready", "True")
    for _ in range(3):  # three more reconciles: never reset, never taken back
        scenario.operator.wait_reconciles(1)
        assert scenario.get("deployment", "prices")["spec"]["replicas"] == 3
    live = json.loads(
        scenario.cluster.kubectl(
            "get", "deployment", "prices", "-n", scenario.namespace, "-o", "json",
            "--show-managed-fields",
        ).stdout
    )  # fmt: skip
    managers = {
        e["manager"]
        for e in live["metadata"]["managedFields"]
        if "f:replicas" in e.get("fieldsV1", {}).get("f:spec", {})
    }
    assert "retail-operator-handoff" in managers
    # What the autoscaler sets stays: the operator no longer applies a count.
    scenario.cluster.kubectl(
        "scale", "deployment", "prices", "-n", scenario.namespace, "--replicas=4"
    )
    scenario.operator.wait_reconciles(2)
    assert scenario.get("deployment", "prices")["spec"]["replicas"] == 4
    status = scenario.get("retailmodel", "prices")["status"]["replicas"]
    assert status["desired"] == 4
    printed = scenario.cluster.kubectl("get", "rmodel", "prices", "-n", scenario.namespace)
    assert "DESIRED" in printed.stdout and "AVAILABLE" in printed.stdout


@pytest.fixture
def zones(scenario: Scenario) -> dict[str, str]:
    for node, zone in ZONES.items():
        scenario.cluster.kubectl(
            "label", "node", node, f"topology.kubernetes.io/zone={zone}", "--overwrite"
        )
    return ZONES


@pytest.mark.parametrize("how", ["Soft", "Hard"])
def test_replicas_spread_across_zones(scenario: Scenario, zones: dict[str, str], how: str) -> None:
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model(), replicas=6)
    manifest["spec"]["topologySpread"] = {"zone": how, "node": "Soft"}
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    placed = Counter(zones[p["spec"]["nodeName"]] for p in pods(scenario, "prices"))
    assert sorted(placed.values()) == [2, 2, 2], placed
