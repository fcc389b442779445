"""The operator end to end against the real API server and moto: gating, pinning, truthful
status, drift, deletion and restarts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.apiproxy import ApiProxy
from tests.integration.operator.conftest import REPOSITORY, OperatorProcess, Scenario
from tests.support.aws import free_port
from tests.support.faults import FaultProxy

from retail_operator.rendering import (
    APPLIED_ANNOTATION,
    SOURCE_ANNOTATION,
    Target,
    source_annotation,
)
from retail_operator.spec import ModelSpec

pytestmark = [pytest.mark.cluster, pytest.mark.aws]
RECHECKS = 3  # re-checks of a refused image watched to show nothing rolls out meanwhile


@pytest.fixture
def image_checks(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], int]:
    """How many ECR calls the operator has made naming an image tag: every re-check of a
    RetailModel's image resolves its tag again (the tests' tag TTL is shorter than a resync),
    so this counts the reconciles of the one RetailModel using that tag."""
    bodies: list[bytes] = []
    forward = fault_proxy.forward

    def counting(method: str, path: str, headers: object, body: bytes) -> Any:
        bodies.append(body)
        return forward(method, path, headers, body)

    monkeypatch.setattr(fault_proxy, "forward", counting)
    return lambda tag: sum(tag.encode() in body for body in list(bodies))


def rechecked(scenario: Scenario, image_checks: Callable[[str], int], tag: str) -> None:
    """Wait until the operator has checked ``tag`` RECHECKS more times."""
    tag = scenario.tag(tag)
    seen = image_checks(tag)
    scenario.wait_for(
        f"{RECHECKS} re-checks of {tag}", lambda: image_checks(tag) >= seen + RECHECKS
    )


def test_clean_image_rolls_out_pinned_to_its_digest(scenario: Scenario) -> None:
    digest = scenario.image("v1-clean")
    model = scenario.model()
    scenario.apply(scenario.manifest("prices", "v1-clean", model))

    ready = scenario.wait_condition("prices", "Ready", "True", "Ready")
    assert digest in ready["message"]
    body = scenario.get("retailmodel", "prices")
    repository = scenario.aws.repository_uri(REPOSITORY)
    assert scenario.deployment_image("prices") == f"{repository}@{digest}"
    assert body["status"]["deployedImage"] == f"{repository}@{digest}"
    assert body["status"]["image"]["digest"] == digest
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert body["status"]["model"]["sha256"]
    deployment = scenario.get("deployment", "prices")
    assert deployment["status"]["readyReplicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    service = scenario.get("service", "prices")
    assert service["spec"]["selector"] == {"mlops.retail.io/retailmodel": "prices"}
    printed = scenario.cluster.kubectl("get", "rmodel", "prices", "-n", scenario.namespace).stdout
    assert "True" in printed and "Ready" in printed and "v1-clean" in printed
    # A healthy rollout is progress, then Ready: no Warning while its pods start.
    events = scenario.wait_for(
        "the Ready event",
        lambda: (
            (found := scenario.events("prices"))
            and "Ready" in {e["reason"] for e in found}
            and found
        ),
    )
    own = [e for e in events if e["involvedObject"]["kind"] == "RetailModel"]
    assert [(e["type"], e["reason"]) for e in own if e["type"] != "Normal"] == []


def test_blocking_findings_are_refused_with_counts(scenario: Scenario) -> None:
    scenario.image("v1-vuln", findings=[("CVE-2024-0001", "CRITICAL"), ("CVE-2024-0002", "HIGH")])
    scenario.apply(scenario.manifest("prices", "v1-vuln", scenario.model()))

    scan = scenario.wait_condition("prices", "ImageScanPassed", "False", "VulnerabilitiesFound")
    assert "CRITICAL: 1, HIGH: 1" in scan["message"]
    assert "CVE-2024-0001" in scan["message"]
    ready = scenario.wait_condition("prices", "Ready", "False", "VulnerabilitiesFound")
    assert ready
    assert scenario.get("deployment", "prices") is None
    events = scenario.wait_for(
        "a VulnerabilitiesFound event",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "VulnerabilitiesFound"],
    )
    assert events[0]["type"] == "Warning"
    described = scenario.cluster.kubectl(
        "describe", "rmodel", "prices", "-n", scenario.namespace
    ).stdout
    assert "VulnerabilitiesFound" in described and "CVE-2024-0001" in described


def test_ignored_cve_passes(scenario: Scenario) -> None:
    digest = scenario.image("v1-ignored", findings=[("CVE-9999-9999", "HIGH")])
    manifest = scenario.manifest(
        "prices", "v1-ignored", scenario.model(), scanPolicy={"ignoreCVEs": ["CVE-9999-9999"]}
    )
    scenario.apply(manifest)
    scenario.wait_condition("prices", "Ready", "True")
    scan = scenario.condition("prices", "ImageScanPassed")
    assert scan is not None and "1 ignored by policy" in scan["message"]
    assert str(scenario.deployment_image("prices")).endswith(digest)


def test_scan_in_progress_waits_then_rolls_out(
    scenario: Scenario, image_checks: Callable[[str], int]
) -> None:
    digest = scenario.image("v1-scanning", status="IN_PROGRESS")
    scenario.apply(scenario.manifest("prices", "v1-scanning", scenario.model()))
    scenario.wait_condition("prices", "ImageScanPassed", "False", "ScanInProgress")
    rechecked(scenario, image_checks, "v1-scanning")  # reconciled again while the scan runs:
    assert scenario.get("deployment", "prices") is None  # still nothing deployed

    scenario.aws.set_scan(REPOSITORY, digest, "COMPLETE", [])
    scenario.wait_condition("prices", "Ready", "True", timeout=30)
    assert str(scenario.deployment_image("prices")).endswith(digest)


def test_no_scan_blocks_when_required(scenario: Scenario) -> None:
    scenario.image("v1-unscanned", status="")
    scenario.apply(scenario.manifest("prices", "v1-unscanned", scenario.model()))
    scenario.wait_condition("prices", "ImageScanPassed", "False", "ScanMissing")
    assert scenario.get("deployment", "prices") is None


def test_missing_model_and_missing_image_are_reported(scenario: Scenario) -> None:
    scenario.image("v1-clean")
    scenario.apply(scenario.manifest("nomodel", "v1-clean", "s3://retail-models/models/absent.ubj"))
    model = scenario.wait_condition("nomodel", "ModelAvailable", "False", "ModelNotFound")
    assert "absent.ubj" in model["message"]
    assert scenario.get("deployment", "nomodel") is None

    scenario.apply(scenario.manifest("noimage", "no-such-tag", scenario.model()))
    scenario.wait_condition("noimage", "ImageScanPassed", "False", "ImageNotFound")


def test_checksum_mismatch_is_refused(scenario: Scenario) -> None:
    scenario.image("v1-clean")
    model = scenario.model()
    manifest = scenario.manifest("prices", "v1-clean", model)
    manifest["spec"]["model"]["sha256"] = "0" * 64
    scenario.apply(manifest)
    scenario.wait_condition("prices", "ModelAvailable", "False", "ChecksumMismatch")
    assert scenario.get("deployment", "prices") is None


def test_tag_changed_to_a_blocked_image_keeps_the_old_digest(
    scenario: Scenario, image_checks: Callable[[str], int]
) -> None:
    good = scenario.image("v1-good")
    scenario.apply(scenario.manifest("prices", "v1-good", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    repository = scenario.aws.repository_uri(REPOSITORY)

    scenario.image("v2-bad", findings=[("CVE-2024-0003", "CRITICAL")])
    scenario.apply(scenario.manifest("prices", "v2-bad", scenario.model()))
    ready = scenario.wait_condition("prices", "Ready", "False", "VulnerabilitiesFound")
    assert f"still serving {repository}@{good}" in ready["message"]
    rechecked(scenario, image_checks, "v2-bad")  # resyncs come and go: the good image stays
    assert scenario.deployment_image("prices") == f"{repository}@{good}"
    body = scenario.get("retailmodel", "prices")
    assert body["status"]["deployedImage"] == f"{repository}@{good}"
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    available = scenario.condition("prices", "Available")
    assert available is not None and available["status"] == "True"


def test_a_model_change_does_not_touch_the_pod_template(scenario: Scenario) -> None:
    scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model("models/a.ubj")))
    scenario.wait_condition("prices", "Ready", "True")
    before = scenario.get("deployment", "prices")

    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model("models/b.ubj")))
    scenario.wait_for(
        "the ConfigMap to name the new model",
        lambda: "models/b.ubj" in str(scenario.get("configmap", "prices-model")),
    )
    after = scenario.get("deployment", "prices")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]


def test_a_model_change_annotates_the_running_pods_so_the_kubelet_refreshes_them(
    scenario: Scenario,
) -> None:
    scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model("models/a.ubj")))
    scenario.wait_condition("prices", "Ready", "True")
    names = {pod["metadata"]["name"] for pod in _pods(scenario)}
    assert len(names) == 2
    assert all(SOURCE_ANNOTATION not in _annotations(pod) for pod in _pods(scenario))

    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model("models/b.ubj")))
    status = scenario.wait_for(
        "the new model deployed",
        lambda: (
            (s := (scenario.get("retailmodel", "prices") or {}).get("status", {}))
            and "models/b.ubj" in s.get("deployedModel", {}).get("s3Uri", "")
            and s
        ),
    )
    deployed = Target(status["deployedImage"], ModelSpec.model_validate(status["deployedModel"]))
    wanted = source_annotation(deployed)[SOURCE_ANNOTATION]
    scenario.wait_for(
        "both pods annotated with the new source",
        lambda: all(_annotations(pod).get(SOURCE_ANNOTATION) == wanted for pod in _pods(scenario)),
    )
    assert {pod["metadata"]["name"] for pod in _pods(scenario)} == names  # no pod replaced


def _pods(scenario: Scenario) -> list[dict[str, Any]]:
    listing = scenario.cluster.get_json(
        "pods", "-n", scenario.namespace, "-l", "mlops.retail.io/retailmodel=prices"
    )
    return list(listing["items"])


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    return dict(pod["metadata"].get("annotations") or {})


def test_hand_edits_are_reverted(scenario: Scenario) -> None:
    digest = scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")

    scenario.cluster.kubectl(
        "set",
        "image",
        "deployment/prices",
        "predictor=evil.example/miner:latest",
        "-n",
        scenario.namespace,
    )
    scenario.cluster.kubectl(
        "patch",
        "service",
        "prices",
        "-n",
        scenario.namespace,
        "--type=merge",
        "-p",
        '{"spec":{"selector":{"mlops.retail.io/retailmodel":"hijacked"}}}',
    )
    scenario.wait_for(
        "the Deployment image to be reverted",
        lambda: str(scenario.deployment_image("prices")).endswith(digest),
        timeout=30,
    )
    scenario.wait_for(
        "the Service selector to be reverted",
        lambda: (
            scenario.get("service", "prices")["spec"]["selector"]
            == {"mlops.retail.io/retailmodel": "prices"}
        ),
        timeout=30,
    )
    scenario.wait_for(
        "a DriftReverted event",
        lambda: [e for e in scenario.events("prices") if e["reason"] == "DriftReverted"],
    )


def _applies(operator: OperatorProcess) -> float:
    return operator.metrics().get('retail_operator_kubernetes_calls_total{verb="apply"}', 0.0)


def test_a_look_at_an_unchanged_retailmodel_applies_nothing(scenario: Scenario) -> None:
    """The periodic look (every 2 s here) re-checks the image and the model, and sends no
    apply when the live children are what it would apply: across a span of looks, the
    operator's own count of applies stands still (other tests' RetailModels, going away,
    may still cause some: the span is waited for, not assumed)."""
    scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    for kind, name in (
        ("deployment", "prices"),
        ("service", "prices"),
        ("configmap", "prices-model"),
    ):
        assert APPLIED_ANNOTATION in scenario.get(kind, name)["metadata"]["annotations"]
    operator = scenario.operator
    spans: list[tuple[float, float]] = []

    def quiet_span() -> bool:
        applies, looks = _applies(operator), operator.reconciles()
        operator.wait_reconciles(4)
        time.sleep(4.5)  # two resyncs more: prices was looked at within
        spans.append((_applies(operator) - applies, operator.reconciles() - looks))
        return spans[-1][0] == 0

    scenario.wait_for("a span of looks without an apply", quiet_span, timeout=90)
    assert spans[-1][1] >= 4


def test_an_edit_made_while_the_operator_was_down_is_put_back_by_a_look(
    scenario: Scenario,
) -> None:
    """No child event reverts it (the operator was not running when it came, and a restarted
    operator has applied nothing yet to put back): the periodic look must not take the stamp
    the edited child still carries for the document applied."""
    digest = scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    scenario.operator.stop()
    try:
        scenario.cluster.kubectl(
            "set", "image", "deployment/prices", "predictor=evil.example/miner:latest",
            "-n", scenario.namespace,
        )  # fmt: skip
        edited = scenario.get("deployment", "prices")
        assert APPLIED_ANNOTATION in edited["metadata"]["annotations"]
    finally:
        scenario.operator.start()
    scenario.wait_for(
        "the Deployment image to be put back",
        lambda: str(scenario.deployment_image("prices")).endswith(digest),
        timeout=30,
    )


def test_deletion_garbage_collects_children_without_a_finalizer(scenario: Scenario) -> None:
    scenario.image("v1-clean")
    scenario.apply(scenario.manifest("prices", "v1-clean", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    body = scenario.get("retailmodel", "prices")
    assert not body["metadata"].get("finalizers")

    scenario.cluster.kubectl("delete", "rmodel", "prices", "-n", scenario.namespace)
    scenario.wait_for(
        "the children to be garbage-collected",
        lambda: all(
            scenario.get(kind, name) is None
            for kind, name in (
                ("deployment", "prices"),
                ("service", "prices"),
                ("configmap", "prices-model"),
            )
        ),
        timeout=60,
    )


@pytest.fixture
def api_proxy(scenario: Scenario, tmp_path: Path) -> Iterator[ApiProxy]:
    proxy = ApiProxy(scenario.cluster.kubeconfig, tmp_path)
    try:
        yield proxy
    finally:
        proxy.close()


def _three_ready(scenario: Scenario) -> tuple[list[str], str]:
    """Three RetailModels of the v1-clean image and one model object, each Ready."""
    model = scenario.model()
    names = [f"model-{index}" for index in range(3)]
    for name in names:
        scenario.apply(scenario.manifest(name, "v1-clean", model))
    for name in names:
        scenario.wait_condition(name, "Ready", "True")
    return names, model


def _proxied_operator(
    session_operator: OperatorProcess, api_proxy: ApiProxy, tmp_path: Path
) -> OperatorProcess:
    """An operator like the session's that reaches the API server through ``api_proxy``."""
    port = free_port()
    return OperatorProcess(
        session_operator.env
        | {
            "KUBECONFIG": str(api_proxy.kubeconfig()),
            "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
            "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
        },
        tmp_path / "proxied-operator.log",
        port,
    )


def test_a_restarted_operator_waits_for_the_child_lists_and_gets_no_child(
    scenario: Scenario, api_proxy: ApiProxy, tmp_path: Path
) -> None:
    """A restart's first looks find the children in the watches' lists, even when a list is
    slow: the proxy answers the Deployments' first list 10 s late (longer than the new replica
    takes to lead), and no reconcile may GET a child one by one meanwhile (at 2,000
    RetailModels a restart sent 4,599 such GETs; without the wait, this one sent six)."""
    scenario.image("v1-clean")
    names, _ = _three_ready(scenario)
    api_proxy.delay = lambda method, path: (
        10.0 if method == "GET" and path.startswith("/apis/apps/v1/deployments?") else 0.0
    )
    session_operator = scenario.operator
    proxied = _proxied_operator(session_operator, api_proxy, tmp_path)
    session_operator.stop()
    try:
        proxied.start()
        proxied.wait_reconciles(2 * len(names), timeout=90)
    finally:
        proxied.stop()
        session_operator.start()
    prefixes = [
        f"/apis/apps/v1/namespaces/{scenario.namespace}/deployments/",
        f"/api/v1/namespaces/{scenario.namespace}/services/",
        f"/api/v1/namespaces/{scenario.namespace}/configmaps/",
    ]
    one_by_one = [path for path in api_proxy.reads if path.startswith(tuple(prefixes))]
    assert not one_by_one, one_by_one
    assert any(path.startswith("/apis/apps/v1/deployments?") for path in api_proxy.reads)


def test_operator_killed_and_restarted_converges_without_duplicates(
    scenario: Scenario, api_proxy: ApiProxy, tmp_path: Path
) -> None:
    """SIGKILL lands between the child apply and the status write: the operator reaches the
    API server through a proxy that holds model-1's status patch recording the new image, so
    when it is killed the Deployment runs the new image and the status does not say so."""
    first = scenario.image("v1-clean")
    names, model = _three_ready(scenario)
    second = scenario.image("v2-clean")
    models = f"/apis/mlops.retail.io/v1alpha1/namespaces/{scenario.namespace}/retailmodels"
    status_path = f"{models}/model-1/status"
    api_proxy.hold = lambda method, path, body: (
        method == "PATCH" and path == status_path and second.encode() in body
    )
    session_operator = scenario.operator
    proxied = _proxied_operator(session_operator, api_proxy, tmp_path)
    session_operator.stop()
    try:
        proxied.start()
        for name in names:
            scenario.apply(scenario.manifest(name, "v2-clean", model))
        assert api_proxy.held.wait(90), "the status write never came:\n" + proxied.logs()[-3000:]
        # In the window: the child carries the new image, the status still the old one.
        assert str(scenario.deployment_image("model-1")).endswith(second)
        recorded = scenario.get("retailmodel", "model-1")["status"]["deployedImage"]
        assert recorded.endswith(first) and not recorded.endswith(second)
        proxied.kill()
    finally:
        proxied.kill()
        session_operator.start()
    for name in names:
        scenario.wait_condition(name, "Ready", "True", timeout=90)
        assert str(scenario.deployment_image(name)).endswith(second)
        status = scenario.get("retailmodel", name)["status"]
        assert status["deployedImage"].endswith(second)
    deployments = scenario.cluster.get_json("deployments", "-n", scenario.namespace)["items"]
    services = scenario.cluster.get_json("services", "-n", scenario.namespace)["items"]
    config_maps = scenario.cluster.get_json("configmaps", "-n", scenario.namespace)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == names
    assert sorted(s["metadata"]["name"] for s in services) == names
    assert sorted(
        c["metadata"]["name"] for c in config_maps if c["metadata"].get("ownerReferences")
    ) == [f"{name}-model" for name in names]


def test_a_lost_status_is_recovered_from_the_children(scenario: Scenario) -> None:
    """A crash between the child apply and the status write leaves children the status does
    not record. With the status gone and a blocked tag waiting, the restarted operator must
    read what runs from the children, keep it, and say so."""
    good = scenario.image("v1-good")
    model = scenario.model()
    scenario.apply(scenario.manifest("prices", "v1-good", model))
    scenario.wait_condition("prices", "Ready", "True")
    running = f"{scenario.aws.repository_uri(REPOSITORY)}@{good}"
    scenario.operator.stop()
    try:
        scenario.lose_status("prices")
        assert not scenario.get("retailmodel", "prices").get("status")
        scenario.image("v2-bad", findings=[("CVE-2024-0003", "CRITICAL")])
        scenario.apply(scenario.manifest("prices", "v2-bad", model))
    finally:
        scenario.operator.start()

    ready = scenario.wait_condition("prices", "Ready", "False", "VulnerabilitiesFound")
    assert f"still serving {running}" in ready["message"]
    status = scenario.get("retailmodel", "prices")["status"]
    assert status["deployedImage"] == running
    assert status["deployedModel"] == {"s3Uri": model, "versionId": "", "sha256": ""}
    assert scenario.deployment_image("prices") == running
