"""The real node runs real containers: registered with its label and taint, it runs a restricted
pod that ``kubectl logs``/``exec``/``port-forward`` reach, that reaches the API server through
the ``kubernetes`` Service with its ServiceAccount token, that a NodePort on 127.0.0.1 serves,
and whose CPU and memory ``kubectl top`` shows (metrics-server, aggregated); pods without the
toleration stay on kwok's nodes."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from retail_tools.cluster import cluster, metrics_server
from retail_tools.cluster.cluster import ClusterError
from retail_tools.cluster.config import REAL_NODE_LABEL
from retail_tools.cluster.node import pause_image
from retail_tools.polling import Timeout, answers, wait_until
from tests.support.real_node import PROBE_PORT, RealNode, probe_pod

pytestmark = pytest.mark.cluster
READY_TIMEOUT = "--timeout=120s"


@pytest.fixture(scope="module")
def restricted_namespace(real_node: RealNode) -> Iterator[str]:
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    name = real_node.cluster.test_namespace("real", restricted)
    real_node.cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name)
    try:
        yield name
    finally:
        real_node.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def probe(real_node: RealNode, restricted_namespace: str) -> str:
    """A Ready probe pod on the real node, behind a NodePort Service."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "probe"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "probe"},
            "ports": [{"port": 80, "targetPort": PROBE_PORT}],
        },
    }
    manifest = yaml.safe_dump_all([probe_pod("probe", real_node.probe_image), service])
    real_node.cluster.apply(manifest, namespace=restricted_namespace)
    real_node.cluster.kubectl(
        "wait", "--for=condition=Ready", "pod/probe", "-n", restricted_namespace, READY_TIMEOUT
    )
    # kube-proxy programs a new NodePort a moment after the Service and its endpoint exist.
    node_port = _node_port(real_node, restricted_namespace)
    url = f"http://127.0.0.1:{node_port}/"
    try:
        wait_until(lambda: answers(url), timeout=60, interval=0.5)
    except Timeout:
        raise AssertionError(f"NodePort {node_port} never answered") from None
    return "probe"


def _get(real_node: RealNode, *args: str) -> Any:
    return real_node.cluster.get_json(*args)


def test_the_real_node_is_ready_labelled_and_tainted_and_kwok_nodes_are_not(
    real_node: RealNode,
) -> None:
    key, value = REAL_NODE_LABEL
    node = _get(real_node, "node", real_node.config.node.name)
    assert node["metadata"]["labels"][key] == value
    assert {"key": key, "value": value, "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    for fake in _get(real_node, "nodes", "-l", "type=kwok")["items"]:
        assert key not in fake["metadata"]["labels"]
        assert not fake["spec"].get("taints")


def test_a_static_pod_runs_the_sandbox_image_so_image_gc_never_removes_it(
    real_node: RealNode,
) -> None:
    """The kubelet's image GC spares only images a container runs (containerd 1.6 pins no
    sandbox image): without this pod, a full disk once cost the node its pause image and every
    new pod stuck in ContainerCreating."""
    name = f"pause-keeper-{real_node.config.node.name}"
    real_node.cluster.kubectl(
        "wait", "--for=condition=Ready", f"pod/{name}", "-n", "kube-system", READY_TIMEOUT
    )
    pod = _get(real_node, "pod", name, "-n", "kube-system")
    assert pod["spec"]["nodeName"] == real_node.config.node.name
    assert pod["spec"]["containers"][0]["image"] == pause_image(real_node.config.registry)


def test_a_restricted_pod_runs_on_the_real_node_and_logs_exec_work(
    real_node: RealNode, restricted_namespace: str, probe: str
) -> None:
    pod = _get(real_node, "pod", probe, "-n", restricted_namespace)
    assert pod["spec"]["nodeName"] == real_node.config.node.name
    assert pod["status"]["podIP"].startswith("10.244.0.")

    identity = real_node.cluster.kubectl(
        "exec", probe, "-n", restricted_namespace, "--", "/probe", "id"
    )
    assert identity.stdout.strip() == "uid=65534 gid=65534"
    logs = real_node.cluster.kubectl("logs", probe, "-n", restricted_namespace)
    assert "listening on :8080" in logs.stdout


def test_port_forward_reaches_the_pod_over_loopback(
    real_node: RealNode, restricted_namespace: str, probe: str
) -> None:
    config = real_node.config
    forward = subprocess.Popen(
        config.kubectl.argv(
            "port-forward",
            "--address=127.0.0.1",
            "-n",
            restricted_namespace,
            f"pod/{probe}",
            f":{PROBE_PORT}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()
        port = re.search(r"127\.0\.0\.1:(\d+) ->", first)
        assert port, first
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/", timeout=10) as reply:
            assert reply.read().decode() == f"hello from {probe}\n"
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    logs = real_node.cluster.kubectl("logs", probe, "-n", restricted_namespace).stdout
    assert "request GET /" in logs


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service_with_its_token(
    real_node: RealNode, restricted_namespace: str, probe: str
) -> None:
    slices = _get(
        real_node, "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"
    )
    (kubernetes,) = slices["items"]
    assert kubernetes["endpoints"][0]["addresses"] == [real_node.config.node.gateway]

    node_port = _node_port(real_node, restricted_namespace)
    with urllib.request.urlopen(f"http://127.0.0.1:{node_port}/whoami", timeout=10) as reply:
        review = json.loads(reply.read())
    user = review["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{restricted_namespace}:default"


def test_a_node_port_on_loopback_answers(
    real_node: RealNode, restricted_namespace: str, probe: str
) -> None:
    node_port = _node_port(real_node, restricted_namespace)
    with urllib.request.urlopen(f"http://127.0.0.1:{node_port}/", timeout=10) as reply:
        assert reply.read().decode() == f"hello from {probe}\n"


def test_kubectl_top_shows_the_pod_through_the_aggregated_metrics_api(
    real_node: RealNode, restricted_namespace: str, probe: str
) -> None:
    statuses = {status.name: status for status in cluster.status(real_node.config)}
    assert statuses[metrics_server.NAME].healthy
    service = _get(real_node, "apiservice", metrics_server.API_SERVICE)
    (available,) = service["status"]["conditions"]
    assert (available["type"], available["status"]) == ("Available", "True")

    def top() -> str:
        # metrics-server has the pod's CPU once it read the kubelet twice (every 15 s).
        listed = real_node.cluster.kubectl(
            "top", "pod", probe, "-n", restricted_namespace, "--no-headers", check=False
        )
        return listed.stdout if listed.returncode == 0 else ""

    line = wait_until(top, timeout=90, what="kubectl top to know the probe pod", interval=2)
    name, cpu, memory = line.split()[:3]
    assert name == probe and cpu.endswith("m") and memory.endswith("Mi"), line
    node = f"/apis/metrics.k8s.io/v1beta1/nodes/{real_node.config.node.name}"
    usage = json.loads(real_node.cluster.kubectl("get", "--raw", node).stdout)["usage"]
    assert usage["cpu"] and usage["memory"]


def test_the_namespace_refuses_a_pod_outside_the_restricted_profile(
    real_node: RealNode, restricted_namespace: str
) -> None:
    pod = probe_pod("privileged", real_node.probe_image)
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(ClusterError, match='violates PodSecurity "restricted:latest"'):
        real_node.cluster.kubectl(
            "apply", "--dry-run=server", "-n", restricted_namespace, "-f", "-",
            stdin=yaml.safe_dump(pod),
        )  # fmt: skip


def test_a_pod_without_the_toleration_is_scheduled_on_a_kwok_node(
    real_node: RealNode, restricted_namespace: str
) -> None:
    pod = probe_pod("elsewhere", real_node.probe_image)
    del pod["spec"]["nodeSelector"], pod["spec"]["tolerations"]
    real_node.cluster.apply(yaml.safe_dump(pod), namespace=restricted_namespace)
    real_node.cluster.kubectl(
        "wait",
        "--for=jsonpath={.spec.nodeName}",
        "pod/elsewhere",
        "-n",
        restricted_namespace,
        READY_TIMEOUT,
    )
    placed = _get(real_node, "pod", "elsewhere", "-n", restricted_namespace)
    assert placed["spec"]["nodeName"].startswith("kwok-node-")


def _node_port(real_node: RealNode, namespace: str) -> int:
    service = _get(real_node, "service", "probe", "-n", namespace)
    return int(service["spec"]["ports"][0]["nodePort"])
