"""The product on real pods: images built here and pulled by digest through the ECR mirror, the
operator in-cluster under its ServiceAccount on the real node, predictor pods it rolls out
there, and load through a NodePort on 127.0.0.1 (never another address).

One session fixture (``stack``, in conftest.py, shared with test_canary_real_pods.py) brings
the whole stack up once (cluster with its node, registry, the AWS stand-in on the node's
bridge, both images pushed, the operator deployed); the tests then act as a team would:
predict, upload a new model, refuse a blocked image, roll out a new one, lose a pod. Every
load counts its failed requests, and the promise is zero.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from retail_tools.images.build import build_release, target_named
from retail_tools.images.push import push_image
from retail_tools.load import Load
from retail_tools.polling import wait_until
from tests.e2e.conftest import API, BUCKET, KEY, NAMESPACE, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]


def release(stack: Stack, tag: str) -> None:
    """A new serving release under ``tag``: the tested image with other bytes."""
    base = f"e2e-{stack.run}"
    build_release(stack.images, target_named("serving"), base, tag, stack.on_node.workdir / tag)


@pytest.fixture
def model_on_node(stack: Stack) -> Iterator[tuple[str, int]]:
    """A RetailModel of two replicas rolled out on the real node, and its NodePort."""
    name = f"prices-{uuid.uuid4().hex[:5]}"
    tag = f"e2e-{stack.run}"
    manifest = stack.on_node.retail_model(name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}", replicas=2)
    stack.on_node.apply(manifest)
    stack.wait_condition(name, "Ready", "True")
    port = stack.on_node.expose(NAMESPACE, name)
    try:
        yield name, port
    finally:
        stack.on_node.remove(NAMESPACE, name)


def test_the_in_cluster_operator_rolls_out_ready_pods_on_the_real_node(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    name, _ = model_on_node
    operators = stack.kubectl.get_json("pods", "-n", "retailmodel-system")["items"]
    assert {p["spec"]["nodeName"] for p in operators} == {stack.on_node.config.node.name}
    pods = stack.running_pods(name)
    assert len(pods) == 2
    digest = stack.tags[f"serving:e2e-{stack.run}"]
    for pod in pods:
        assert pod["spec"]["nodeName"] == stack.on_node.config.node.name
        (container,) = pod["status"]["containerStatuses"]
        assert container["imageID"].endswith(digest)  # the bytes ECR named, pulled by digest
        assert container["ready"] and container["restartCount"] == 0
    info = stack.model_info(pods[0]["metadata"]["name"])
    assert info["source_uri"] == f"s3://{BUCKET}/{KEY}" and info["version_id"]


def unrouted_entries(port: int) -> list[str]:
    """Conntrack entries for connections to NodePort ``port`` that kube-proxy never NATed to a
    pod (their reply comes from 127.0.0.1 itself): each refuses the next connection that
    reuses its source port, for as long as it lives (two minutes)."""
    listed = subprocess.run(
        ["conntrack", "-L", "-p", "tcp", "--orig-port-dst", str(port)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    replies = [(line, line.split("src=")[2:3]) for line in listed.splitlines()]
    return [line for line, reply in replies if reply and reply[0].split()[0] == "127.0.0.1"]


def test_exposing_sends_nothing_until_kube_proxy_routes_the_port(stack: Stack) -> None:
    # The Service comes first and its pods after, so for a while kube-proxy refuses the port.
    name = f"late-{uuid.uuid4().hex[:5]}"
    exposed: dict[str, int] = {}
    exposing = threading.Thread(
        target=lambda: exposed.update(port=stack.on_node.expose(NAMESPACE, name)), daemon=True
    )
    exposing.start()
    try:
        port = int(
            wait_until(
                lambda: stack.kubectl.output(
                    "get", "service", f"{name}-local", "-n", NAMESPACE,
                    "-o", "jsonpath={.spec.ports[0].nodePort}", "--ignore-not-found",
                ),
                timeout=30,
                what="the NodePort",
            )
        )  # fmt: skip
        time.sleep(3)  # a probe in these seconds would be refused, and leave its entry behind
        assert unrouted_entries(port) == []
        tag = f"e2e-{stack.run}"
        stack.on_node.apply(
            stack.on_node.retail_model(name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}")
        )
        stack.wait_condition(name, "Ready", "True")
        exposing.join(timeout=60)
        assert exposed.get("port") == port
        with Load(port, workers=2, max_seconds=3) as load:
            pass
        assert load.report.failed == 0, load.report.summary()
        assert unrouted_entries(port) == []
    finally:
        stack.on_node.remove(NAMESPACE, name)


def test_predict_through_the_service_on_loopback(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    _, port = model_on_node
    with Load(port, workers=2, max_seconds=5) as load:
        pass
    report = load.report
    assert report.sent > 0 and report.failed == 0, report.summary()


def test_a_new_model_reaches_every_pod_under_load_with_no_failed_request(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    name, port = model_on_node
    pods = [p["metadata"]["name"] for p in stack.running_pods(name)]
    before = {stack.model_info(pod)["version"] for pod in pods}
    with Load(port, workers=4, max_seconds=240) as load:
        version = stack.upload_model(seed=2)
        assert version not in before
        wait_until(
            lambda: all(stack.model_info(pod)["version"] == version for pod in pods),
            timeout=120,
            what=f"every pod serving {version}",
        )
    report = load.report
    assert report.failed == 0, report.summary()
    assert report.models[version] > 0  # the load saw the new model answer
    assert [p["metadata"]["name"] for p in stack.running_pods(name)] == pods  # no restart


def test_a_blocked_image_leaves_the_pods_serving_the_old_digest(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    name, port = model_on_node
    tag = f"e2e-{stack.run}-blocked"
    release(stack, tag)
    ecr = stack.on_node.aws.client("ecr")
    manifest = push_image(stack.images, target_named("serving"), tag, ecr, lambda _line: None)
    stack.on_node.aws.set_scan(API, manifest.digest, "COMPLETE", [("CVE-2026-4242", "CRITICAL")])
    good = stack.tags[f"serving:e2e-{stack.run}"]
    with Load(port, workers=2, max_seconds=120) as load:
        stack.on_node.apply(
            stack.on_node.retail_model(name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}", replicas=2)
        )
        ready = stack.wait_condition(name, "Ready", "False", "VulnerabilitiesFound")
    assert "CVE-2026-4242" in ready["message"] and good in ready["message"]
    for pod in stack.running_pods(name):
        assert pod["status"]["containerStatuses"][0]["imageID"].endswith(good)
    assert load.report.failed == 0, load.report.summary()


def test_a_new_image_rolls_out_under_load_with_no_failed_request(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    name, port = model_on_node
    tag = f"e2e-{stack.run}-next"
    release(stack, tag)
    ecr = stack.on_node.aws.client("ecr")
    manifest = push_image(stack.images, target_named("serving"), tag, ecr, lambda _line: None)
    stack.on_node.aws.set_scan(API, manifest.digest, "COMPLETE", [])
    with Load(port, workers=4, max_seconds=300) as load:
        stack.on_node.apply(
            stack.on_node.retail_model(name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}", replicas=2)
        )
        stack.wait_condition(name, "Ready", "True")
    report = load.report
    pods = stack.running_pods(name)
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["containerStatuses"][0]["imageID"].endswith(manifest.digest)
    assert report.failed == 0, report.summary()
    print(f"\nrolling image update under load: {report.summary()}")


def test_a_lost_pod_is_replaced_while_the_service_keeps_answering(
    stack: Stack, model_on_node: tuple[str, int]
) -> None:
    name, port = model_on_node
    victim = stack.running_pods(name)[0]["metadata"]["name"]
    with Load(port, workers=2, max_seconds=180) as load:
        stack.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")
        wait_until(
            lambda: (
                len(stack.running_pods(name)) == 2
                and victim not in {p["metadata"]["name"] for p in stack.running_pods(name)}
            ),
            timeout=180,
            what="a replacement pod Ready",
        )
    assert load.report.failed == 0, load.report.summary()
