"""Canary rollouts against the real API server and a versioned bucket on moto: everything that
needs no traffic. kwok's pods run no server, so their /metrics cannot be read: the analysis
sees silence, which must never promote. Verdicts on real traffic are in
tests/e2e/test_canary_real_pods.py (the real node)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.integration.operator.conftest import BUCKET, Scenario
from tests.support.faults import FaultProxy

from retail_tools.standin import REGION

pytestmark = [pytest.mark.cluster, pytest.mark.aws]
KEY = "models/prices/canary.ubj"
DURATION = 10  # the shortest the CRD allows
CANARY = {
    "strategy": "Canary",
    "canary": {"replicas": 1, "analysis": {"durationSeconds": DURATION, "minRequests": 50}},
}
LOOKS = 3  # HEADs of the model after the analysis window, each a full reconcile


@pytest.fixture
def model_heads(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many HEADs of the test's model object the operator has made (one per reconcile;
    the tests' model TTL is shorter than a resync)."""
    heads: list[str] = []
    forward = fault_proxy.forward

    def counting(method: str, path: str, headers: object, body: bytes) -> Any:
        if method == "HEAD" and KEY in path:
            heads.append(path)
        return forward(method, path, headers, body)

    monkeypatch.setattr(fault_proxy, "forward", counting)
    return lambda: len(heads)


@pytest.fixture(autouse=True)
def own_model_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model key of each test's own: the session's operator has seen (and cached the HEAD
    of) the keys earlier tests uploaded to, so a shared key's "first version" is not this
    test's."""
    monkeypatch.setattr(sys.modules[__name__], "KEY", f"models/{uuid.uuid4().hex[:8]}/canary.ubj")


def pinned_version(scenario: Scenario, config_map: str) -> str:
    data = scenario.get("configmap", config_map)["data"]
    return str(json.loads(data["model-source.json"])["versionId"])


def rollout(scenario: Scenario, name: str) -> dict[str, Any]:
    return dict((scenario.get("retailmodel", name) or {}).get("status", {}).get("rollout", {}))


@pytest.fixture
def analyzing(scenario: Scenario) -> Iterator[tuple[str, str]]:
    """A Canary RetailModel serving v1 whose object just got v2: (v1, v2) version ids."""
    scenario.image("v1")
    v1 = scenario.aws.put_model(BUCKET, KEY, b"model-v1")
    uri = f"s3://{BUCKET}/{KEY}"
    scenario.apply(scenario.manifest("prices", "v1", uri, rollout=CANARY))
    scenario.wait_condition("prices", "Ready", "True")
    scenario.wait_condition("prices", "ModelRolledOut", "True", "Stable")
    assert rollout(scenario, "prices")["stable"]["versionId"] == v1
    assert pinned_version(scenario, "prices-model") == v1
    v2 = scenario.aws.put_model(BUCKET, KEY, b"model-v2")
    scenario.wait_condition("prices", "ModelRolledOut", "False", "Analyzing")
    yield v1, v2


def test_a_new_version_runs_on_a_canary_pinned_to_it_while_stable_stays(
    scenario: Scenario, analyzing: tuple[str, str]
) -> None:
    v1, v2 = analyzing
    state = rollout(scenario, "prices")
    assert state["phase"] == "Analyzing"
    assert state["stable"]["versionId"] == v1 and state["candidate"]["versionId"] == v2
    assert state["startedAt"]
    assert pinned_version(scenario, "prices-model") == v1  # stable pods do not hot-reload v2
    assert pinned_version(scenario, "prices-model-canary") == v2
    stable = scenario.get("deployment", "prices")
    canary = scenario.get("deployment", "prices-canary")
    assert canary["spec"]["replicas"] == 1
    image = stable["spec"]["template"]["spec"]["containers"][0]["image"]
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == image
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["mlops.retail.io/track"] == "canary"
    assert stable["spec"]["template"]["metadata"]["labels"]["mlops.retail.io/track"] == "stable"
    service = scenario.get("service", "prices")
    assert set(service["spec"]["selector"].items()) <= set(labels.items())  # one Service, both
    volumes = {v["name"]: v for v in canary["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-source"]["configMap"]["name"] == "prices-model-canary"
    assert canary["metadata"]["ownerReferences"][0]["name"] == "prices"
    analysing = [e for e in scenario.events("prices") if e["reason"] == "Analyzing"]
    assert analysing and v2 in analysing[0]["message"]
    printed = scenario.cluster.kubectl("get", "rmodel", "prices", "-n", scenario.namespace).stdout
    assert "Analyzing" in printed


def test_silence_never_promotes_past_the_duration(
    scenario: Scenario, analyzing: tuple[str, str], model_heads: Callable[[], int]
) -> None:
    """kwok's pods serve no /metrics: zero requests seen, however long the analysis runs."""
    _, v2 = analyzing
    started = rollout(scenario, "prices")["startedAt"]
    window_ends = datetime.fromisoformat(started) + timedelta(seconds=DURATION)
    scenario.wait_for(
        "the analysis window to pass", lambda: datetime.now(UTC) > window_ends, timeout=30
    )
    seen = model_heads()
    scenario.wait_for(f"{LOOKS} reconciles after the window", lambda: model_heads() >= seen + LOOKS)
    state = rollout(scenario, "prices")
    assert state["phase"] == "Analyzing" and state["startedAt"] == started
    assert state["candidate"]["versionId"] == v2
    assert state["figures"]["requests"] == 0
    assert scenario.get("deployment", "prices-canary") is not None
    condition = scenario.condition("prices", "ModelRolledOut")
    assert condition is not None and condition["reason"] == "Analyzing"
    assert "0 candidate / 0 stable requests (min 50)" in condition["message"]


def test_pinning_a_version_bypasses_the_canary_and_removes_it(
    scenario: Scenario, analyzing: tuple[str, str]
) -> None:
    v1, _ = analyzing
    uri = f"s3://{BUCKET}/{KEY}"
    manifest = scenario.manifest("prices", "v1", uri, rollout=CANARY)
    manifest["spec"]["model"]["versionId"] = v1
    scenario.apply(manifest)
    scenario.wait_for(
        "the canary removed", lambda: scenario.get("deployment", "prices-canary") is None
    )
    scenario.wait_for(
        "the canary ConfigMap removed",
        lambda: scenario.get("configmap", "prices-model-canary") is None,
    )
    scenario.wait_condition("prices", "Ready", "True")
    body = scenario.get("retailmodel", "prices")
    assert "rollout" not in body["status"]
    assert all(c["type"] != "ModelRolledOut" for c in body["status"]["conditions"])
    assert pinned_version(scenario, "prices-model") == v1


def test_an_unversioned_bucket_is_reported_clearly(scenario: Scenario) -> None:
    bucket = f"plain-{scenario.namespace}"
    s3 = scenario.aws.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"model-v1", Metadata={"sha256": "0" * 64})
    scenario.image("v1")
    scenario.apply(scenario.manifest("plain", "v1", f"s3://{bucket}/{KEY}", rollout=CANARY))

    condition = scenario.wait_condition("plain", "ModelRolledOut", "False", "VersioningRequired")
    assert f"S3 bucket {bucket} is not versioned" in condition["message"]
    assert "Enable versioning" in condition["message"]
    warned = scenario.wait_for(
        "a VersioningRequired Warning",
        lambda: [e for e in scenario.events("plain") if e["reason"] == "VersioningRequired"],
    )
    assert warned[0]["type"] == "Warning"
    assert scenario.get("deployment", "plain-canary") is None
    assert rollout(scenario, "plain")["phase"] == "Stable"


def deadline(seconds: int) -> dict[str, Any]:
    analysis = {"durationSeconds": DURATION, "maxDurationSeconds": seconds, "minRequests": 50}
    return {"strategy": "Canary", "canary": {"replicas": 1, "analysis": analysis}}


def test_the_canary_pod_template_names_its_candidate(
    scenario: Scenario, analyzing: tuple[str, str]
) -> None:
    """A new candidate is a new template, so new pods: none of the last candidate's serve it."""
    _, v2 = analyzing

    def annotation() -> str:
        canary = scenario.get("deployment", "prices-canary") or {}
        template = canary.get("spec", {}).get("template", {}).get("metadata", {})
        return str(template.get("annotations", {}).get("mlops.retail.io/model-source", ""))

    first = scenario.wait_for("the candidate named in the template", annotation)
    v3 = scenario.aws.put_model(BUCKET, KEY, b"model-v3")
    scenario.wait_for("the canary pinned to v3", lambda: rollout(scenario, "prices")
                      .get("candidate", {}).get("versionId") == v3)  # fmt: skip
    second = scenario.wait_for("a new template", lambda: annotation() != first and annotation())
    assert second and second != first
    assert pinned_version(scenario, "prices-model-canary") == v3
    assert v2 != v3


def test_silence_past_the_deadline_is_inconclusive_and_survives_a_lost_status(
    scenario: Scenario,
) -> None:
    scenario.image("v1")
    scenario.aws.put_model(BUCKET, KEY, b"model-v1")
    uri = f"s3://{BUCKET}/{KEY}"
    scenario.apply(scenario.manifest("prices", "v1", uri, rollout=deadline(DURATION)))
    scenario.wait_condition("prices", "ModelRolledOut", "True", "Stable")
    v2 = scenario.aws.put_model(BUCKET, KEY, b"model-v2")
    condition = scenario.wait_condition(
        "prices", "ModelRolledOut", "False", "Inconclusive", timeout=DURATION + 30
    )
    assert (
        f"Version {v2} rolled back, inconclusive: no verdict within {DURATION} s"
        in (condition["message"])
    )
    scenario.wait_for(
        "the canary removed", lambda: scenario.get("deployment", "prices-canary") is None
    )
    # The status goes (an Argo CD replace, a restore) and the operator restarts.
    scenario.operator.stop()
    try:
        scenario.lose_status("prices")
    finally:
        scenario.operator.start()
    scenario.wait_condition("prices", "ModelRolledOut", "False", "RolledBack")
    state = rollout(scenario, "prices")
    assert state["phase"] == "RolledBack" and state["rejected"][-1]["versionId"] == v2
    for _ in range(LOOKS):  # looked at again and again: never analysed again
        time.sleep(float(scenario.operator.env["RETAIL_OPERATOR_RESYNC_SECONDS"]))
        assert scenario.get("deployment", "prices-canary") is None
    assert pinned_version(scenario, "prices-model") != v2

    v3 = scenario.aws.put_model(BUCKET, KEY, b"model-v2")  # the same bytes, a new version
    same = scenario.wait_condition("prices", "ModelRolledOut", "False", "RejectedBefore")
    assert f"version {v3} has the same bytes" in same["message"] and v2 in same["message"]
    assert scenario.get("deployment", "prices-canary") is None


def test_a_leftover_canary_it_owns_is_removed(scenario: Scenario) -> None:
    scenario.image("v1")
    scenario.aws.put_model(BUCKET, KEY, b"model-v1")
    scenario.apply(scenario.manifest("prices", "v1", f"s3://{BUCKET}/{KEY}", rollout=CANARY))
    scenario.wait_condition("prices", "ModelRolledOut", "True", "Stable")
    stable = scenario.get("deployment", "prices")
    leftover = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "prices-canary",
            "namespace": scenario.namespace,
            "labels": {"app.kubernetes.io/managed-by": "retail-operator"},
            "ownerReferences": stable["metadata"]["ownerReferences"],  # the RetailModel's
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"leftover": "yes"}},
            "template": {
                "metadata": {"labels": {"leftover": "yes"}},
                "spec": {"containers": [{"name": "c", "image": "leftover"}]},
            },
        },
    }
    scenario.cluster.apply(json.dumps(leftover), scenario.namespace)
    scenario.wait_for(
        "the leftover canary removed",
        lambda: scenario.get("deployment", "prices-canary") is None,
        timeout=30,
    )
