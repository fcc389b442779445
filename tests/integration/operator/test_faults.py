"""Operator faults: AWS throttling and denial, an API server restart, a storm of edits.
In every case the operator converges on the latest spec, never replaces a good running image
with one it could not check, and reports the failure as a condition and an Event."""

from __future__ import annotations

import time

import pytest
from tests.integration.operator.conftest import BUCKET, REPOSITORY, Scenario
from tests.support.faults import FaultProxy, ecr_error, s3_error

from retail_tools.cluster import cluster

pytestmark = [pytest.mark.cluster, pytest.mark.aws]


def rolled_out(scenario: Scenario, name: str, tag: str) -> str:
    digest = scenario.image(tag)
    scenario.apply(scenario.manifest(name, tag, scenario.model()))
    scenario.wait_condition(name, "Ready", "True")
    return f"{scenario.aws.repository_uri(REPOSITORY)}@{digest}"


def test_ecr_throttling_is_unknown_not_a_rollout_then_recovers(
    scenario: Scenario, faults: FaultProxy
) -> None:
    running = rolled_out(scenario, "prices", "v1-good")
    new_digest = scenario.image("v2-good")
    rule = faults.inject(ecr_error("DescribeImages", "ThrottlingException"))
    scenario.apply(scenario.manifest("prices", "v2-good", scenario.model()))

    throttled = scenario.wait_condition("prices", "ImageScanPassed", "Unknown", "Throttled")
    assert "throttled" in throttled["message"]
    assert rule.hits >= 4  # botocore retried before giving up
    assert scenario.deployment_image("prices") == running
    scenario.wait_for(
        "a Throttled event",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "Throttled"],
    )

    faults.clear()
    scenario.wait_condition("prices", "Ready", "True", timeout=60)
    assert str(scenario.deployment_image("prices")).endswith(new_digest)


def test_ecr_access_denied_blocks_and_keeps_the_running_image(
    scenario: Scenario, faults: FaultProxy
) -> None:
    running = rolled_out(scenario, "prices", "v1-good")
    scenario.image("v2-good")
    faults.inject(ecr_error("DescribeImages", "AccessDeniedException"))
    scenario.apply(scenario.manifest("prices", "v2-good", scenario.model()))

    denied = scenario.wait_condition("prices", "ImageScanPassed", "False", "AccessDenied")
    assert "access denied" in denied["message"]
    ready = scenario.wait_condition("prices", "Ready", "False", "AccessDenied")
    assert f"still serving {running}" in ready["message"]
    assert scenario.deployment_image("prices") == running
    scenario.wait_for(
        "an AccessDenied warning",
        lambda: [
            e
            for e in scenario.events("prices")
            if e["reason"] == "AccessDenied" and e["type"] == "Warning"
        ],
    )


def test_s3_access_denied_is_a_model_condition(scenario: Scenario, faults: FaultProxy) -> None:
    scenario.image("v1-good")
    model = scenario.model("models/locked.ubj")
    faults.inject(s3_error("HEAD", f"/{BUCKET}/models/locked.ubj", "AccessDenied", 403))
    scenario.apply(scenario.manifest("prices", "v1-good", model))
    condition = scenario.wait_condition("prices", "ModelAvailable", "False", "AccessDenied")
    assert "models/locked.ubj" in condition["message"]
    assert scenario.get("deployment", "prices") is None
    events = scenario.wait_for(
        "an AccessDenied Event",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "AccessDenied"],
    )
    assert all(e["type"] == "Warning" and "models/locked.ubj" in e["message"] for e in events)

    faults.clear()
    scenario.wait_condition("prices", "Ready", "True", timeout=60)


def test_api_server_restart_while_the_operator_runs(scenario: Scenario) -> None:
    rolled_out(scenario, "prices", "v1-good")
    config = scenario.cluster.config
    cluster.down(config, only=["kube-apiserver"])
    time.sleep(3)  # the operator's watches and requests fail meanwhile
    cluster.up(config)

    digest = scenario.image("v2-good")
    scenario.apply(scenario.manifest("prices", "v2-good", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True", timeout=120)
    assert str(scenario.deployment_image("prices")).endswith(digest)
    assert scenario.operator.process is not None and scenario.operator.process.poll() is None


def test_many_quick_edits_converge_on_the_last(scenario: Scenario) -> None:
    digests = {f"v{n}": scenario.image(f"v{n}") for n in range(1, 4)}
    model = scenario.model()
    tags = [f"v{1 + n % 3}" for n in range(15)] + ["v2"]
    for replicas, tag in enumerate(tags, start=1):
        scenario.apply(scenario.manifest("prices", tag, model, replicas=1 + replicas % 3))
    final_replicas = 1 + len(tags) % 3
    scenario.wait_condition("prices", "Ready", "True", timeout=90)
    body = scenario.get("retailmodel", "prices")
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert str(scenario.deployment_image("prices")).endswith(digests["v2"])
    deployment = scenario.get("deployment", "prices")
    assert deployment["spec"]["replicas"] == final_replicas
    assert len(scenario.cluster.get_json("deployments", "-n", scenario.namespace)["items"]) == 1
