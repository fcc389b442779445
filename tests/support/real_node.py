"""The local cluster's real node for tests that run real containers.

``real_node`` (session-scoped) uses the session's ``local_cluster`` (whose ``up`` starts the node
unless ``RETAILMODEL_REAL_NODE=0``), waits until the node is Ready, and imports the tests' probe
image: ``node_probe/main.go`` built statically into a FROM-scratch image (cached by the
source's hash). ``probe_pod`` renders a pod that runs there under the restricted Pod Security
profile.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from retail_tools.cluster import cluster, node_images
from retail_tools.cluster.config import REAL_NODE_LABEL, ClusterConfig
from tests.support.cluster import LocalCluster

PROBE_SOURCE = Path(__file__).parent / "node_probe" / "main.go"
PROBE_PORT = 8080


@dataclass(frozen=True)
class RealNode:
    """The session cluster's real node as tests use it: the cluster, and the probe image
    imported into the node's containerd (where the node's things are: ``config.node``)."""

    cluster: LocalCluster
    probe_image: str

    @property
    def config(self) -> ClusterConfig:
        return self.cluster.config


@pytest.fixture(scope="session")
def real_node(local_cluster: LocalCluster) -> RealNode:
    config = local_cluster.config
    if not config.real_node:
        pytest.skip("RETAILMODEL_REAL_NODE=0: this cluster runs no real node")
    assert config.node.name in cluster.ready_nodes(config)
    return RealNode(local_cluster, ensure_probe_image(config))


def ensure_probe_image(config: ClusterConfig) -> str:
    """The probe image's name, imported into the node's containerd if it was not yet."""
    digest = hashlib.sha256(PROBE_SOURCE.read_bytes()).hexdigest()[:12]
    name = f"localhost/retailmodel/node-probe:{digest}"
    if node_images.is_imported(config, name):
        return name
    folder = config.cache_dir / "tools" / f"node-probe-{digest}"
    archive = folder / "image.tar"
    if not archive.exists():
        folder.mkdir(parents=True, exist_ok=True)
        binary = folder / "probe"
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), str(PROBE_SOURCE)],
            check=True,
            cwd=folder,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
        image = node_images.oci_archive(
            name, {"probe": (binary.read_bytes(), 0o755)}, ["/probe"], "65534:65534"
        )
        archive.write_bytes(image)
    node_images.import_archive(config, archive)
    return name


def probe_pod(name: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod for the real node (its label selected, its taint tolerated) that the restricted
    Pod Security profile admits, with a real readiness probe; ``kubernetes.default.svc`` is
    pinned to the Service's ClusterIP (there is no cluster DNS here)."""
    key, value = REAL_NODE_LABEL
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "nodeSelector": {key: value},
            "tolerations": [
                {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
            ],
            "hostAliases": [{"ip": "10.96.0.1", "hostnames": ["kubernetes.default.svc"]}],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "ports": [{"containerPort": PROBE_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": PROBE_PORT},
                        "periodSeconds": 1,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
