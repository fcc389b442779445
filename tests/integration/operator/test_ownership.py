"""The gate holds under ordinary faults, against the real API server: a name someone else holds
is left alone, the status subresource is never an input, every admitted spec gets a status, and
a scan exception does not silence the re-checks of the running image."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.operator.conftest import REPOSITORY, Scenario

pytestmark = [pytest.mark.cluster, pytest.mark.aws]


def theirs(scenario: Scenario, kind: str, name: str) -> None:
    documents = {
        "Service": {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]},
        },
        "ConfigMap": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"owner": "theirs"}},
    }
    document = documents[kind] | {
        "metadata": {
            "name": name,
            "namespace": scenario.namespace,
            # Even the operator's own label: only the owner reference says whose it is.
            "labels": {"app.kubernetes.io/managed-by": "retail-operator", "team": "theirs"},
        }
    }
    scenario.apply(document)


@pytest.mark.parametrize(("kind", "name"), [("Service", "prices"), ("ConfigMap", "prices-model")])
def test_a_name_someone_else_holds_is_left_alone_reported_and_never_collected(
    scenario: Scenario, kind: str, name: str
) -> None:
    theirs(scenario, kind, name)
    before = scenario.get(kind.lower(), name)
    scenario.image("v1")
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    ready = scenario.wait_condition("prices", "Ready", "False", "NameConflict")
    assert f"{kind} {name} already exists and is not this RetailModel's" in ready["message"]
    assert scenario.get("deployment", "prices") is None  # nothing half rolled out
    after = scenario.get(kind.lower(), name)
    assert after["metadata"].get("ownerReferences") is None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    scenario.wait_for(
        "a NameConflict warning",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "NameConflict"],
    )
    scenario.cluster.kubectl("delete", "retailmodel", "prices", "-n", scenario.namespace)
    scenario.wait_for(
        "the RetailModel to go", lambda: scenario.get("retailmodel", "prices") is None
    )
    assert scenario.get(kind.lower(), name) is not None  # not garbage-collected with it

    # The name freed, a new RetailModel of that name rolls out.
    scenario.cluster.kubectl("delete", kind.lower(), name, "-n", scenario.namespace)
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")


def test_a_forged_status_is_never_applied(scenario: Scenario) -> None:
    """Someone writes status.deployedImage (a never-scanned image of another account) while
    the spec's image is refused: nothing rolls it out."""
    scenario.image("v2-bad", findings=[("CVE-2026-0009", "CRITICAL")])
    scenario.apply(scenario.manifest("prices", "v2-bad", scenario.model()))
    scenario.wait_condition("prices", "Ready", "False", "VulnerabilitiesFound")
    forged = "999999999999.dkr.ecr.us-east-1.amazonaws.com/evil/miner@sha256:" + "f" * 64
    status = {
        "status": {
            "deployedImage": forged,
            "deployedModel": {"s3Uri": "s3://evil/model.ubj", "versionId": "", "sha256": ""},
        }
    }
    for _ in range(2):  # once while it runs, once as the operator comes back
        scenario.cluster.kubectl(
            "patch", "retailmodel", "prices", "-n", scenario.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps(status),
        )  # fmt: skip
        scenario.operator.stop()
        scenario.operator.start()
        scenario.wait_for(
            "the forged status to be overwritten",
            lambda: (
                "deployedImage"
                not in (scenario.get("retailmodel", "prices") or {}).get("status", {})
            ),
            timeout=30,
        )
    assert scenario.get("deployment", "prices") is None
    ready = scenario.wait_condition("prices", "Ready", "False", "VulnerabilitiesFound")
    assert "evil" not in ready["message"]


def test_a_spec_the_operator_cannot_read_gets_a_status_naming_the_field(
    scenario: Scenario,
) -> None:
    scenario.image("v1")
    manifest = scenario.manifest("prices", "v1", scenario.model())
    # The API server's date-time format admits a 99-hour offset; no date library does.
    manifest["spec"]["scanPolicy"] = {
        "exceptions": [
            {"id": "CVE-2026-1", "reason": "no fix yet", "expires": "2030-01-01T00:00:00+99:00"}
        ]
    }
    scenario.apply(manifest)
    ready = scenario.wait_condition("prices", "Ready", "False", "SpecInvalid")
    assert ready["message"].startswith("spec.scanPolicy.exceptions.0.expires")
    scenario.wait_for(
        "a SpecInvalid warning",
        lambda: [
            e
            for e in scenario.events("prices")
            if e["reason"] == "SpecInvalid" and e["type"] == "Warning"
        ],
    )
    printed = scenario.cluster.kubectl("get", "rmodel", "prices", "-n", scenario.namespace).stdout
    assert "SpecInvalid" in printed


def test_a_live_exception_does_not_silence_the_running_image_re_checks(
    scenario: Scenario,
) -> None:
    """An exception ending in 2099 once set the next reconcile 73 years away. A new CRITICAL
    finding on the running image must still be seen within two resyncs (2 s each here)."""
    digest = scenario.image("v1-excepted", findings=[("CVE-2026-0100", "HIGH")])
    manifest = scenario.manifest("prices", "v1-excepted", scenario.model())
    manifest["spec"]["scanPolicy"] = {
        "exceptions": [
            {"id": "CVE-2026-0100", "reason": "accepted risk", "expires": "2099-01-01T00:00:00Z"}
        ]
    }
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    scenario.wait_condition("prices", "RunningImageCompliant", "True", "Compliant")
    scenario.aws.set_scan(
        REPOSITORY,
        digest,
        "COMPLETE",
        [("CVE-2026-0100", "HIGH"), ("CVE-2026-0101", "CRITICAL")],
    )
    changed = datetime.now(UTC)
    resync = float(scenario.operator.env["RETAIL_OPERATOR_RESYNC_SECONDS"])
    ttl = float(scenario.operator.env["RETAIL_OPERATOR_SCAN_TTL_SECONDS"])
    condition = scenario.wait_condition(
        "prices",
        "RunningImageCompliant",
        "False",
        "NewVulnerabilities",
        timeout=2 * resync + ttl + 5,
    )
    assert "CVE-2026-0101" in condition["message"]
    noticed = datetime.fromisoformat(condition["lastTransitionTime"])
    assert noticed - changed <= timedelta(seconds=2 * resync + ttl + 1)


def test_a_retail_model_on_its_way_out_is_not_rolled_out_again(scenario: Scenario) -> None:
    """Foreground deletion: the garbage collector deletes the children first, and the
    RetailModel stays (deletionTimestamp set) until they are gone. Its deletion and the
    resyncs (every 2 s here) must not make again what is being collected; Ready says why."""
    scenario.image("v1")
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    kubectl, namespace = scenario.cluster.kubectl, scenario.namespace
    hold = json.dumps({"metadata": {"finalizers": ["tests.retail.io/hold"]}})
    # The ConfigMap held by a finalizer of ours keeps the RetailModel waiting, with the
    # Deployment and Service collected meanwhile.
    kubectl("patch", "configmap", "prices-model", "-n", namespace, "--type=merge", "-p", hold)
    try:
        kubectl(
            "delete", "retailmodel", "prices", "-n", namespace,
            "--cascade=foreground", "--wait=false",
        )  # fmt: skip
        scenario.wait_for(
            "the Deployment and Service to be collected",
            lambda: (
                scenario.get("deployment", "prices") is None
                and scenario.get("service", "prices") is None
            ),
        )
        resync = float(scenario.operator.env["RETAIL_OPERATOR_RESYNC_SECONDS"])
        deadline = time.monotonic() + 4 * resync
        while time.monotonic() < deadline:  # four resyncs: none makes them again
            assert scenario.get("deployment", "prices") is None
            assert scenario.get("service", "prices") is None
            time.sleep(0.3)
        leaving = scenario.get("retailmodel", "prices")
        assert leaving["metadata"].get("deletionTimestamp")
        assert leaving["status"]["observedGeneration"] == leaving["metadata"]["generation"]
        ready = next(c for c in leaving["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "Deleting")
        assert ready["message"].endswith("waiting for foregroundDeletion")
    finally:
        release = json.dumps({"metadata": {"finalizers": None}})
        kubectl(
            "patch", "configmap", "prices-model", "-n", namespace, "--type=merge", "-p", release
        )
    scenario.wait_for(
        "the RetailModel to go", lambda: scenario.get("retailmodel", "prices") is None
    )
