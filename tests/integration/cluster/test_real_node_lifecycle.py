"""Taking the real node down leaves nothing on the machine, and ``up`` brings it back.

The node's bridge, ports and iptables chains are machine-wide, so only one cluster runs it:
this test takes down the session cluster's own node (its pods included) while the control
plane keeps running, checks every trace with ``leftovers``, and starts the node again. (The
private cluster of ``test_lifecycle`` runs no node.)
"""

from __future__ import annotations

import pytest
import yaml

from retail_tools.cluster import cluster, metrics_server
from retail_tools.cluster.leftovers import leftovers
from retail_tools.cluster.node import node_components
from tests.support.real_node import RealNode, probe_pod

pytestmark = pytest.mark.cluster


def test_node_down_leaves_nothing_behind_and_up_brings_it_back(
    real_node: RealNode, cluster_namespace: str
) -> None:
    config = real_node.config
    # A running pod, so that pods, veths, netns mounts and cgroups exist to be cleaned up.
    real_node.cluster.apply(
        yaml.safe_dump(probe_pod("doomed", real_node.probe_image)), cluster_namespace
    )
    real_node.cluster.kubectl(
        "wait", "--for=condition=Ready", "pod/doomed", "-n", cluster_namespace, "--timeout=120s"
    )
    podman = cluster.podman_runs_containers()
    assert leftovers(config, podman_running=podman)  # the check sees a running node

    names = [part.name for part in node_components(config)]
    stopped = cluster.down(config, only=names)

    # metrics-server, which reads only this node, stops with it, and its API is unregistered
    # (an API nothing serves would fail every discovery, namespace deletion included).
    assert set(stopped) == {*names, metrics_server.NAME}
    assert leftovers(config, podman_running=podman) == []
    listed = real_node.cluster.kubectl("get", "apiservices", "-o", "name").stdout
    assert metrics_server.API_SERVICE not in listed

    cluster.up(config)
    assert config.node.name in cluster.ready_nodes(config)
    assert metrics_server.NAME in {s.name for s in cluster.status(config) if s.healthy}
