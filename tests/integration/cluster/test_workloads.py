"""Workloads on the local control plane: the scheduler places pods on kwok's nodes, kwok makes
them Ready, and the controller manager's garbage collector removes what an owner owned."""

from __future__ import annotations

import json

import pytest

from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.cluster

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.invalid/web:1
"""


def test_a_deployment_of_three_replicas_becomes_available(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    local_cluster.apply(DEPLOYMENT, cluster_namespace)

    local_cluster.kubectl(
        "rollout", "status", "deployment/web", "-n", cluster_namespace, "--timeout=120s"
    )

    deployment = local_cluster.get_json("deployment", "web", "-n", cluster_namespace)
    assert deployment["status"]["readyReplicas"] == 3
    pods = local_cluster.get_json("pods", "-n", cluster_namespace, "-l", "app=web")["items"]
    nodes = {node["metadata"]["name"] for node in local_cluster.get_json("nodes")["items"]}
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in nodes  # placed by the scheduler
        assert pod["spec"]["serviceAccountName"] == "default"  # ServiceAccount admission ran


def test_deleting_an_owner_garbage_collects_its_dependents(
    local_cluster: LocalCluster, cluster_namespace: str
) -> None:
    local_cluster.kubectl("create", "configmap", "owner", "-n", cluster_namespace)
    owner = local_cluster.get_json("configmap", "owner", "-n", cluster_namespace)
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    local_cluster.apply(json.dumps(dependent), cluster_namespace)
    local_cluster.kubectl("create", "configmap", "unowned", "-n", cluster_namespace)

    local_cluster.kubectl("delete", "configmap", "owner", "-n", cluster_namespace)

    local_cluster.kubectl(
        "wait", "--for=delete", "configmap/dependent", "-n", cluster_namespace, "--timeout=60s"
    )
    remaining = local_cluster.get_json("configmaps", "-n", cluster_namespace)["items"]
    names = {item["metadata"]["name"] for item in remaining}
    assert "dependent" not in names
    assert "unowned" in names
