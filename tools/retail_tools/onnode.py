"""The product on the local cluster's real node, as its users run it.

The pieces the demo and the end-to-end tests share: the AWS stand-in bound to the node's bridge
gateway (so pods reach it; the host reaches it there too), images built here and pushed so that
the registry and ECR name the same digest, the operator applied from ``deploy/overlays/local``
with that digest (in-cluster, under its ServiceAccount, on the real node), RetailModels placed
on the real node, and a NodePort on 127.0.0.1 through which load reaches the pods: traffic
never leaves this machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from retail_tools.cluster import network
from retail_tools.cluster.config import REAL_NODE_LABEL, ClusterConfig
from retail_tools.cluster.kubectl import Kubectl
from retail_tools.polling import answers, wait_until
from retail_tools.settings import current
from retail_tools.standin import AwsStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_OVERLAY = REPO_ROOT / "deploy" / "overlays" / "local"
OPERATOR_NAMESPACE = "retailmodel-system"
STANDIN_SECRET = "aws-standin"  # named by deploy/overlays/local and by RetailModels placed here
Notify = Callable[[str], None]


def placement() -> dict[str, Any]:
    """The spec fields that put a RetailModel's pods on the real node, with the stand-in's
    environment: what a team on EKS would write for a node pool and IRSA."""
    key, value = REAL_NODE_LABEL
    return {
        "nodeSelector": {key: value},
        "tolerations": [
            {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
        ],  # fmt: skip
        "envFrom": [{"secretRef": {"name": STANDIN_SECRET}}],
    }


@dataclass
class OnNode:
    """One run of the product on the real node: a cluster that is up with its node, and a
    stand-in bound to the node's bridge."""

    config: ClusterConfig
    aws: AwsStandIn
    workdir: Path

    @classmethod
    def standin_for(cls, config: ClusterConfig) -> AwsStandIn:
        """A stand-in pods can reach: bound to the bridge gateway, not to loopback."""
        return AwsStandIn(host=config.node.gateway)

    @property
    def kubectl(self) -> Kubectl:
        return self.config.kubectl

    def apply(self, documents: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Server-side, as the operator's own applies are."""
        self.kubectl.apply(documents, server_side=True)

    def standin_secret(self, namespace: str) -> None:
        """The stand-in's endpoint and test credentials as the Secret pods take their AWS
        environment from (on EKS, IRSA gives pods their credentials instead)."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": STANDIN_SECRET, "namespace": namespace},
                "type": "Opaque",
                "stringData": self.aws.env(),
            }
        )

    def deploy_operator(self, digest: str, notify: Notify = lambda _: None) -> None:
        """``deploy/overlays/local`` with the operator image pinned to ``digest``, applied and
        rolled out on the real node (both replicas; one leads)."""
        overlay = self.workdir / "operator-overlay"
        overlay.mkdir(parents=True, exist_ok=True)
        image = f"{self.aws.repository_uri('mlops/retail-operator')}"
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(LOCAL_OVERLAY, overlay)],
                    "images": [{"name": image, "digest": digest}],
                }
            )
        )
        rendered = subprocess.run(
            [str(current().kustomize), "build", str(overlay)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        documents = [d for d in yaml.safe_load_all(rendered) if d]
        crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
        namespaces = [d for d in documents if d["kind"] == "Namespace"]
        self.apply(crds + namespaces)
        self.kubectl(
            "wait", "--for=condition=Established", "crd/retailmodels.mlops.retail.io",
            "--timeout=60s",
        )  # fmt: skip
        self.standin_secret(OPERATOR_NAMESPACE)
        self.apply([d for d in documents if d not in crds and d not in namespaces])
        notify(f"operator {image}@{digest[:19]}… applied; waiting for its rollout")
        self.kubectl(
            "rollout", "status", "deployment/retail-operator", "-n", OPERATOR_NAMESPACE,
            "--timeout=240s",
        )  # fmt: skip

    def retail_model(
        self, name: str, namespace: str, tag: str, model_uri: str, **spec: Any
    ) -> dict[str, Any]:
        """A RetailModel whose pods run on the real node."""
        return {
            "apiVersion": "mlops.retail.io/v1alpha1",
            "kind": "RetailModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "image": {"repository": self.aws.repository_uri("mlops/retail-api"), "tag": tag},
                "model": {"s3Uri": model_uri},
                "reloadIntervalSeconds": 5,
                **placement(),
                **spec,
            },
        }

    def expose(self, namespace: str, name: str) -> int:
        """A NodePort Service beside the operator's ClusterIP one, selecting the same pods: the
        port on 127.0.0.1 (kube-proxy) through which tests, bench and demo send load."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{name}-local", "namespace": namespace},
                "spec": {
                    "type": "NodePort",
                    "selector": {"mlops.retail.io/retailmodel": name},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            }
        )
        service = self.kubectl.get_json("service", f"{name}-local", "-n", namespace)
        port = int(service["spec"]["ports"][0]["nodePort"])
        # kube-proxy programs a new NodePort a moment after the Service exists, and until it
        # knows the endpoints it refuses connections to it. Not a byte is sent before then: a
        # refused SYN leaves a conntrack entry without NAT for two minutes, and a later
        # connection that happens to reuse its source port is refused by it too (what made
        # the demo's loads lose one or two requests in ten thousand).
        routed = f"kube-proxy to route port {port}"
        wait_until(lambda: _routed(port), timeout=60, what=routed, interval=0.5)
        ready = f"http://127.0.0.1:{port}/ready"
        wait_until(lambda: answers(ready), timeout=60, what=f"{ready} to answer", interval=0.5)
        return port

    def remove(self, namespace: str, name: str, *, wait: bool = False) -> None:
        """Delete a RetailModel and the NodePort ``expose`` made for it (``wait``: until the
        RetailModel and what it owns are gone)."""
        wait_flag = f"--wait={str(wait).lower()}"
        self.kubectl("delete", "retailmodel", name, "-n", namespace, wait_flag)
        self.kubectl("delete", "service", f"{name}-local", "-n", namespace, "--wait=false")

    def pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        selector = f"mlops.retail.io/retailmodel={name}"
        listing = self.kubectl.get_json("pods", "-n", namespace, "-l", selector)
        return list(listing["items"])

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        """The RetailModel's condition of type ``kind`` for its current generation ({} while it
        has none): a condition about an older spec says nothing of this one."""
        body = self.kubectl.get_json("retailmodel", name, "-n", namespace)
        generation = body["metadata"]["generation"]
        for condition in body.get("status", {}).get("conditions", []):
            if condition["type"] == kind and condition.get("observedGeneration") == generation:
                return dict(condition)
        return {}

    def ready_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The RetailModel's pods that are Ready and not terminating."""
        return [
            pod
            for pod in self.pods(namespace, name)
            if not pod["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in pod["status"].get("conditions", []))
        ]  # fmt: skip


def _routed(port: int) -> bool:
    """Whether kube-proxy has a NAT rule for NodePort ``port``: it has one only once the
    Service has endpoints (before that, a filter rule refuses the port)."""
    rules = network.run("iptables", "-t", "nat", "-S", "KUBE-NODEPORTS", check=False).stdout
    return f"--dport {port} " in rules
