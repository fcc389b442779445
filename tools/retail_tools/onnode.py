"""The product on the local cluster's real node, as its users run it.

The pieces the demo and the end-to-end tests share: the AWS stand-in bound to the node's bridge
gateway (so pods reach it; the host reaches it there too), pods' AWS credentials by IRSA as on
EKS (the stand-in trusts the cluster's token issuer and the roles the ServiceAccounts name; only
its endpoint is local, in the ``aws-standin`` ConfigMap), images built here and pushed so that
the registry and ECR name the same digest, the operator applied from ``deploy/overlays/local``
with that digest (in-cluster, under its ServiceAccount, on the real node), RetailModels placed
on the real node under the predictors' ServiceAccount, and a NodePort on 127.0.0.1 through
which load reaches the pods: traffic never leaves this machine.
"""

from __future__ import annotations

import json
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
from retail_tools.webidentity import IdentityProvider

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_OVERLAY = REPO_ROOT / "deploy" / "overlays" / "local"
OPERATOR_NAMESPACE = "retailmodel-system"
OPERATOR_SERVICE_ACCOUNT = "retail-operator"
# deploy/predictor's, with its IAM role annotated by deploy/irsa.
PREDICTOR_SERVICE_ACCOUNT = "retail-predictor"
# A ConfigMap holding the stand-in's endpoint (AWS_ENDPOINT_URL) and nothing else: named by
# deploy/overlays/local and by RetailModels placed here. Credentials come by IRSA.
STANDIN_CONFIG = "aws-standin"
# The operator's: where its pods read the local registry (RETAIL_OPERATOR_REGISTRY_URL), named by
# deploy/overlays/local.
REGISTRY_CONFIG = "local-registry"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
POD_IDENTITY_KINDS = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
Notify = Callable[[str], None]


def placement() -> dict[str, Any]:
    """The spec fields that put a RetailModel's pods on the real node, with the stand-in's
    endpoint: what a team on EKS would write for a node pool (there, AWS's endpoints need
    none)."""
    key, value = REAL_NODE_LABEL
    return {
        "nodeSelector": {key: value},
        "tolerations": [
            {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
        ],  # fmt: skip
        "envFrom": [{"configMapRef": {"name": STANDIN_CONFIG}}],
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

    def standin_config(self, namespace: str) -> None:
        """The ConfigMap pods take the stand-in's endpoint from (on EKS, AWS's own endpoints
        need none): no credentials in it, those come by IRSA (``trust_cluster``)."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": STANDIN_CONFIG, "namespace": namespace},
                "data": {"AWS_ENDPOINT_URL": self.aws.endpoint},
            }
        )

    def registry_config(self) -> None:
        """The ConfigMap the operator takes the local registry's address from: the bridge
        gateway's registry port (``network.registry_rules``), as its pods cannot reach the
        registry's loopback address (on EKS, ECR's registry is the image's host)."""
        url = network.registry_url(self.config.node, self.config.registry)
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": REGISTRY_CONFIG, "namespace": OPERATOR_NAMESPACE},
                "data": {"RETAIL_OPERATOR_REGISTRY_URL": url},
            }
        )

    def trust_cluster(self) -> None:
        """IAM for IRSA, in the stand-in, as a platform team sets it up on AWS: the cluster's
        ServiceAccount token issuer registered as an OIDC provider (with the keys it publishes
        at ``/openid/v1/jwks``), and each role the local overlay's ServiceAccounts name
        trusting exactly that ServiceAccount."""
        discovery = self.kubectl.output("get", "--raw", "/.well-known/openid-configuration")
        jwks = json.loads(self.kubectl.output("get", "--raw", "/openid/v1/jwks"))
        self.aws.trust_provider(IdentityProvider.from_jwks(json.loads(discovery)["issuer"], jwks))
        for account in _identities():
            self._trust(account)

    def predictor_namespace(self, namespace: str) -> None:
        """Another namespace RetailModels run in here, made as ``deploy/predictor`` and
        ``deploy/irsa`` make ``retail``: restricted, with the predictors' ServiceAccount and its
        role (trusted by the stand-in), and the stand-in's endpoint."""
        (template,) = [
            a for a in _identities() if a["metadata"]["name"] == PREDICTOR_SERVICE_ACCOUNT
        ]
        account = {**template, "metadata": {**template["metadata"], "namespace": namespace}}
        labels = {"pod-security.kubernetes.io/enforce": "restricted"}
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": labels},
                },
                account,
            ]
        )
        self._trust(account)
        self.standin_config(namespace)

    def _trust(self, account: dict[str, Any]) -> None:
        metadata = account["metadata"]
        subject = f"system:serviceaccount:{metadata['namespace']}:{metadata['name']}"
        self.aws.trust_role(metadata["annotations"][ROLE_ANNOTATION], subject)

    def wait_for_pod_identity(self, namespace: str, service_account: str) -> None:
        """Until a pod created now under ``service_account`` would get its IRSA token and role
        (an admission policy takes effect a moment after it is applied): asked with a
        server-side dry run, which runs admission without creating anything."""
        key, value = REAL_NODE_LABEL
        context = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pod-identity-probe", "namespace": namespace},
            "spec": {
                "serviceAccountName": service_account,
                "nodeSelector": {key: value},
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{"name": "probe", "image": "probe", "securityContext": context}],
            },
        }

        def injected() -> bool:
            created = self.kubectl(
                "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod)
            )
            env = json.loads(created.stdout)["spec"]["containers"][0].get("env", [])
            return any(variable["name"] == "AWS_ROLE_ARN" for variable in env)

        what = f"pods of {namespace}/{service_account} to get their IRSA role"
        wait_until(injected, timeout=60, what=what, interval=0.5)

    def install_pod_identity(self) -> None:
        """What the local overlay has for IRSA, applied ahead of anything that runs pods, and
        in effect: its stand-in for EKS's pod identity webhook (the admission policy), with the
        namespaces and role-annotated ServiceAccounts it reads. On EKS the webhook is part of
        the cluster before any app is synced; here Argo CD would create the policy a sync wave
        before the operator, and a pod admitted before it takes effect has no credentials."""
        kinds = {"Namespace", "ServiceAccount", *POD_IDENTITY_KINDS}
        self.apply([d for d in _render(LOCAL_OVERLAY) if d["kind"] in kinds])
        for account in _identities():
            metadata = account["metadata"]
            self.wait_for_pod_identity(metadata["namespace"], metadata["name"])

    def deploy_operator(self, digest: str, notify: Notify = lambda _: None) -> None:
        """``deploy/overlays/local`` with the operator image pinned to ``digest``, applied and
        rolled out on the real node (both replicas; one leads), its pods getting AWS
        credentials by IRSA."""
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
        documents = _render(overlay)
        crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
        namespaces = [d for d in documents if d["kind"] == "Namespace"]
        deployments = [d for d in documents if d["kind"] == "Deployment"]
        self.apply(crds + namespaces)
        self.kubectl(
            "wait", "--for=condition=Established", "crd/retailmodels.mlops.retail.io",
            "--timeout=60s",
        )  # fmt: skip
        self.standin_config(OPERATOR_NAMESPACE)
        self.registry_config()
        self.apply([d for d in documents if d not in crds + namespaces + deployments])
        self.wait_for_pod_identity(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        self.apply(deployments)
        notify(f"operator {image}@{digest[:19]}… applied; waiting for its rollout")
        self.kubectl(
            "rollout", "status", "deployment/retail-operator", "-n", OPERATOR_NAMESPACE,
            "--timeout=240s",
        )  # fmt: skip

    def retail_model(
        self, name: str, namespace: str, tag: str, model_uri: str, **spec: Any
    ) -> dict[str, Any]:
        """A RetailModel whose pods run on the real node, as the predictors' ServiceAccount
        (in the namespace ``deploy/predictor`` makes, ``retail``)."""
        return {
            "apiVersion": "mlops.retail.io/v1alpha1",
            "kind": "RetailModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "image": {"repository": self.aws.repository_uri("mlops/retail-api"), "tag": tag},
                "model": {"s3Uri": model_uri},
                "reloadIntervalSeconds": 5,
                "serviceAccountName": PREDICTOR_SERVICE_ACCOUNT,
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
        """Delete a RetailModel and the NodePort ``expose`` made for it, if it did (``wait``:
        until the RetailModel and what it owns are gone)."""
        wait_flag = f"--wait={str(wait).lower()}"
        self.kubectl("delete", "retailmodel", name, "-n", namespace, wait_flag)
        self.kubectl(
            "delete", "service", f"{name}-local", "-n", namespace, "--wait=false",
            "--ignore-not-found",
        )  # fmt: skip

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


def _identities() -> list[dict[str, Any]]:
    """The local overlay's ServiceAccounts that name an IAM role (deploy/irsa's)."""
    return [
        document
        for document in _render(LOCAL_OVERLAY)
        if document["kind"] == "ServiceAccount"
        and ROLE_ANNOTATION in document["metadata"].get("annotations", {})
    ]


def _render(kustomization: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [str(current().kustomize), "build", str(kustomization)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [document for document in yaml.safe_load_all(rendered) if document]


def _routed(port: int) -> bool:
    """Whether kube-proxy has a NAT rule for NodePort ``port``: it has one only once the
    Service has endpoints (before that, a filter rule refuses the port)."""
    rules = network.run("iptables", "-t", "nat", "-S", "KUBE-NODEPORTS", check=False).stdout
    return f"--dport {port} " in rules
