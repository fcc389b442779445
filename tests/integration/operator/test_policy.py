"""The platform's RetailModelPolicy, against the real API server: a tenant's spec looser than
the policy is not rolled out and says why, what runs keeps running, the policy's own status
counts the RetailModels outside it, S3 calls carry the bucket owner it names, and a restarted
operator looks at nothing before the policies are listed.

Each test's policy selects only its own namespace (by a label), so the session's other tests
run under no policy."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.apiproxy import ApiProxy
from tests.integration.operator.conftest import BUCKET, Scenario
from tests.integration.operator.test_failover import replica
from tests.support.faults import FaultProxy
from tests.support.signing import KeyPair

from retail_contract.source import signature_key
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


def test_a_restarted_operator_rolls_out_nothing_before_the_policies_are_listed(
    scenario: Scenario, team_policy: Callable[[dict[str, Any]], str], tmp_path: Path
) -> None:
    """A spec looser than the policy waits while no operator runs; the operator that starts
    reaches the API server through a proxy that refuses its list of the policies (403) for a
    while. Its RetailModels and children are listed at once, but nothing is looked at until the
    policies are in too: then the spec is refused, and it never ran. Looking first, it rolled
    the spec out with no policy known (kopf's watch of the policies started after the
    operator's own lists)."""
    name = team_policy(STRICT)
    scenario.image("v1")
    scenario.operator.stop()
    proxy = ApiProxy(scenario.cluster.kubeconfig, tmp_path)
    proxy.refuse = lambda method, path: (
        method == "GET"
        and path.startswith("/apis/mlops.retail.io/v1alpha1/retailmodelpolicies?")
        and "watch=1" not in path
    )
    restarted = replica(
        scenario, "restarted", f"policy-{scenario.namespace}", tmp_path, proxy.kubeconfig()
    )
    try:
        manifest = scenario.manifest("prices", "v1", scenario.model())
        manifest["spec"]["scanPolicy"] = {"blockSeverity": "NONE", "requireScan": False}
        scenario.apply(manifest)
        restarted.start()
        scenario.wait_for("the policies' list refused three times", lambda: proxy.refused >= 3)
        assert not restarted.ready()
        assert (scenario.get("retailmodel", "prices") or {}).get("status") is None
        assert scenario.get("deployment", "prices") is None
        proxy.refuse = None
        ready = scenario.wait_condition("prices", "Ready", "False", "PolicyViolation")
        assert f"RetailModelPolicy {name}: scanning.maxBlockSeverity" in ready["message"]
        assert scenario.get("deployment", "prices") is None
    finally:
        restarted.stop()
        proxy.close()
        scenario.operator.start()


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


def test_a_model_no_trusted_key_signed_never_replaces_the_running_one(
    scenario: Scenario, team_policy: Callable[[dict[str, Any]], str]
) -> None:
    """models.trustedKeys: the operator reads each version's signature from S3 (moto) and
    checks it; tampered bytes, a stranger's key and no signature are each refused by name, and
    the pods keep the signed version, told to require signatures."""
    team, stranger = KeyPair.new(), KeyPair.new()
    team_policy({"models": {"trustedKeys": [team.public]}})
    key = "models/prices/signed.ubj"
    s3 = scenario.aws.client("s3")

    def put(body: bytes, signature: bytes | None) -> str:
        if signature is not None:
            digest = hashlib.sha256(body).hexdigest()
            scenario.aws.ensure_bucket(BUCKET)
            s3.put_object(Bucket=BUCKET, Key=signature_key(key, digest), Body=signature)
        return scenario.aws.put_model(BUCKET, key, body)

    signed = put(b"model-v1", team.sign(b"model-v1"))
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", f"s3://{BUCKET}/{key}")
    manifest["spec"]["model"]["versionId"] = signed
    scenario.apply(manifest)
    verified = scenario.wait_condition("prices", "ModelSignatureVerified", "True")
    assert (
        verified["reason"] == "SignatureVerified" and team.fingerprint[:12] in verified["message"]
    )
    scenario.wait_condition("prices", "Ready", "True")

    def told() -> tuple[dict[str, str], dict[str, Any]]:
        deployment = scenario.get("deployment", "prices")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        document = scenario.get("configmap", "prices-model")["data"]["model-source.json"]
        return env, json.loads(document)

    env, document = told()
    assert env["REQUIRE_MODEL_SIGNATURE"] == "true"
    assert document["versionId"] == signed and document["trustedKeys"] == [team.public]

    refusals = {
        "Unsigned": put(b"model-unsigned", None),
        "SignatureInvalid": put(b"model-tampered", team.sign(b"model-v1")),
        "UntrustedKey": put(b"model-stranger", stranger.sign(b"model-stranger")),
    }
    for reason, version in refusals.items():
        manifest["spec"]["model"]["versionId"] = version
        scenario.apply(manifest)
        scenario.wait_condition("prices", "ModelSignatureVerified", "False", reason)
        ready = scenario.wait_condition("prices", "Ready", "False", reason)
        assert "Model not rolled out" in ready["message"]
        assert told()[1]["versionId"] == signed  # the signed version keeps serving
