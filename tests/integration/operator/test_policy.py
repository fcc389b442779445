"""The platform's RetailModelPolicy, against the real API server: a tenant's spec looser than
the policy is not rolled out and says why, what runs keeps running, the policy's own status
counts the RetailModels outside it, and S3 calls carry the bucket owner it names.

Each test's policy selects only its own namespace (by a label), so the session's other tests
run under no policy."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.integration.operator.conftest import Scenario
from tests.support.faults import FaultProxy

from retail_tools.standin import ACCOUNT

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

STRICT = {
    "images": {"allowedAccounts": [ACCOUNT], "allowedRepositories": ["mlops/*"]},
    "scanning": {"maxBlockSeverity": "HIGH", "allowUnscanned": False},
}


def test_a_looser_spec_is_refused_naming_the_policy_and_the_rule(
    scenario: Scenario, team_policy: Callable[[dict[str, Any]], str]
) -> None:
    name = team_policy(STRICT)
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model())
    manifest["spec"]["scanPolicy"] = {"blockSeverity": "NONE", "requireScan": False}
    scenario.apply(manifest)
    ready = scenario.wait_condition("prices", "Ready", "False", "PolicyViolation")
    assert f"RetailModelPolicy {name}: scanning.maxBlockSeverity" in ready["message"]
    assert f"RetailModelPolicy {name}: scanning.allowUnscanned" in ready["message"]
    assert scenario.get("deployment", "prices") is None
    scenario.wait_for(
        "a PolicyViolation warning",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "PolicyViolation"],
    )
    scenario.wait_for(
        "the policy's status to count the violation",
        lambda: (
            (scenario.get("retailmodelpolicy", name) or {}).get("status", {}).get("violations") == 1
        ),
        timeout=30,
    )
    printed = scenario.cluster.kubectl("get", "retailmodelpolicies", name).stdout
    assert "namespaces with" in printed and "HIGH" in printed

    manifest["spec"]["scanPolicy"] = {"blockSeverity": "MEDIUM"}  # stricter than the policy
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")


def test_a_policy_tightened_later_keeps_what_runs_running(
    scenario: Scenario, team_policy: Callable[[dict[str, Any]], str]
) -> None:
    digest = scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model())
    manifest["spec"]["serviceAccountName"] = "default"
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    scenario.image("v2")
    team_policy({"pods": {"allowedServiceAccounts": ["retail-predictor"]}})
    manifest["spec"]["serviceAccountName"] = "admin"
    manifest["spec"]["image"]["tag"] = scenario.tag("v2")
    scenario.apply(manifest)
    ready = scenario.wait_condition("prices", "Ready", "False", "PolicyViolation")
    assert "pods.allowedServiceAccounts: serviceAccountName admin" in ready["message"]
    assert "still serving" in ready["message"]
    assert str(scenario.deployment_image("prices")).endswith(digest)


def test_s3_calls_carry_the_bucket_owner_the_policy_names(
    scenario: Scenario,
    team_policy: Callable[[dict[str, Any]], str],
    fault_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owners: list[str | None] = []
    forward = fault_proxy.forward
    key = f"models/{uuid.uuid4().hex[:8]}/model.ubj"

    def recording(method: str, path: str, headers: Any, body: bytes) -> Any:
        if method == "HEAD" and key in path:
            owners.append(headers.get("x-amz-expected-bucket-owner"))
        return forward(method, path, headers, body)

    monkeypatch.setattr(fault_proxy, "forward", recording)
    team_policy({"models": {"bucketOwner": ACCOUNT}})
    scenario.image("v1")
    scenario.apply(scenario.manifest("prices", "v1", scenario.model(key)))
    scenario.wait_condition("prices", "Ready", "True")
    assert owners and set(owners) == {ACCOUNT}


SELECTED: dict[str, Any] = {"namespaceSelector": {}}


@pytest.mark.parametrize(
    ("name", "spec", "named"),
    [
        ("default", {"namespaceSelector": {"matchLabels": {"a": "b"}}}, "no namespaceSelector"),
        ("team-x", {}, "needs a namespaceSelector"),
        ("team-y", SELECTED | {"scanning": {"maxBlockSeverity": "SOME"}}, "maxBlockSeverity"),
        ("team-z", SELECTED | {"images": {"allowedAccounts": ["1"]}}, "allowedAccounts"),
    ],
    ids=["default-with-selector", "selector-missing", "severity", "account"],
)  # fmt: skip
def test_a_malformed_policy_is_refused(
    scenario: Scenario, name: str, spec: dict[str, Any], named: str
) -> None:
    document = {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModelPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    result = scenario.cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(document), check=False
    )
    assert result.returncode != 0 and named in result.stderr
