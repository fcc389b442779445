"""The local overlay applied to the real local control plane, and the operator's exact rights.

The overlay's CRD, namespaces and RBAC are applied for real; its operator Deployment is checked
by server-side dry runs (schema, and a pod made from its template admitted by the namespace's
"restricted" Pod Security admission, which must be enforcing: a violating pod is refused), so
this file never disturbs the operator the real-pod tests run from the same overlay. The sample
RetailModel must pass the CRD's schema (server-side dry run). Then
``kubectl auth can-i --as=<operator ServiceAccount>`` checks the operator can do exactly what
it needs and nothing more: no Secrets, no deletes but of Deployments and ConfigMaps (a canary's),
no exec, no RBAC changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "system:serviceaccount:retailmodel-system:retail-operator"
NAMESPACE = "retailmodel-system"
CRD = "retailmodels.mlops.retail.io"

# (verb, resource, subresource) the operator needs, cluster-wide.
NEEDED = [
    *[(verb, "retailmodels.mlops.retail.io", "") for verb in ("list", "watch")],
    *[(verb, "retailmodels.mlops.retail.io", "status") for verb in ("get", "patch", "update")],
    *[(verb, "retailmodelpolicies.mlops.retail.io", "") for verb in ("get", "list", "watch")],
    ("patch", "retailmodelpolicies.mlops.retail.io", "status"),
    *[
        (verb, resource, "")
        for resource in ("deployments.apps", "services", "configmaps")
        for verb in ("get", "list", "watch", "create", "patch")
    ],
    ("delete", "deployments.apps", ""),  # the canary's, when a canary ends
    ("delete", "configmaps", ""),
    ("list", "replicasets.apps", ""),  # a Deployment's current ReplicaSet: a canary group
    *[
        (verb, resource, "")
        for resource in ("poddisruptionbudgets.policy", "horizontalpodautoscalers.autoscaling")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    ],
    ("get", "pods", ""),  # the canary analysis reads pods' /metrics by pod IP
    ("list", "pods", ""),
    ("patch", "pods", ""),  # the model-source annotation, so the kubelet refreshes the ConfigMap
    *[
        (verb, resource, "")
        for resource in ("events", "events.events.k8s.io")
        for verb in ("create", "patch")
    ],
    ("list", "namespaces", ""),
    ("watch", "namespaces", ""),
]

FORBIDDEN = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("create", "pods", "exec"),
    ("watch", "pods", ""),
    ("delete", "pods", ""),
    ("update", "deployments.apps", ""),
    ("delete", "services", ""),
    ("get", "retailmodels.mlops.retail.io", ""),  # listed and watched: never read one by one
    ("patch", "retailmodels.mlops.retail.io", ""),  # only its status is written
    ("create", "retailmodels.mlops.retail.io", ""),
    ("delete", "retailmodels.mlops.retail.io", ""),
    ("update", "retailmodels.mlops.retail.io", ""),
    ("create", "namespaces", ""),
    ("delete", "namespaces", ""),
    ("get", "namespaces", ""),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),  # kopf discovers nothing
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""),
    ("create", "serviceaccounts", "token"),
    ("list", "nodes", ""),
    ("get", "events", ""),
]


@pytest.fixture(scope="module")
def deployed(local_cluster: LocalCluster) -> LocalCluster:
    """Everything the overlay makes but the operator Deployment, applied for real (the RBAC the
    checks below ask about). The Deployment itself is checked by server-side dry runs: the
    real-pod stack (tests/e2e/conftest.py) runs the operator from this same overlay with its
    image pinned, and applying the overlay's ``:local`` tag over it would start a rollout."""
    documents = [d for d in yaml.safe_load_all(rendered_overlay(local_cluster)) if d]
    local_cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e-deploy",
        "-f",
        "-",
        stdin=yaml.safe_dump_all([d for d in documents if d["kind"] != "Deployment"]),
    )
    local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    return local_cluster


def rendered_overlay(cluster: LocalCluster) -> str:
    return cluster.kubectl("kustomize", str(REPO_ROOT / "deploy" / "overlays" / "local")).stdout


def operator_deployment(cluster: LocalCluster) -> dict[str, Any]:
    (deployment,) = [
        d for d in yaml.safe_load_all(rendered_overlay(cluster)) if d and d["kind"] == "Deployment"
    ]
    return dict(deployment)


def can_i(cluster: LocalCluster, verb: str, resource: str, subresource: str, *scope: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={OPERATOR}", *scope]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = cluster.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl auth can-i said {answer!r}: {result.stderr}"
    return answer == "yes"


@pytest.mark.parametrize(("verb", "resource", "subresource"), NEEDED)
def test_operator_can_do_what_it_needs(
    deployed: LocalCluster, verb: str, resource: str, subresource: str
) -> None:
    assert can_i(deployed, verb, resource, subresource, "--all-namespaces")
    assert can_i(deployed, verb, resource, subresource, "--namespace=retail")


@pytest.mark.parametrize(("verb", "resource", "subresource"), FORBIDDEN)
def test_operator_cannot_do_anything_else(
    deployed: LocalCluster, verb: str, resource: str, subresource: str
) -> None:
    assert not can_i(deployed, verb, resource, subresource, f"--namespace={NAMESPACE}")
    assert not can_i(deployed, verb, resource, subresource, "--namespace=retail")


def test_granted_rules_list_nothing_beyond_the_cluster_role(deployed: LocalCluster) -> None:
    listing = deployed.kubectl("auth", "can-i", "--list", f"--as={OPERATOR}").stdout
    resources = {
        line.split()[0] for line in listing.splitlines()[1:] if line and not line[0].isspace()
    }
    everyone = {
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
    }
    ours = {
        "retailmodels.mlops.retail.io",
        "retailmodels.mlops.retail.io/status",
        "retailmodelpolicies.mlops.retail.io",
        "retailmodelpolicies.mlops.retail.io/status",
        "deployments.apps",
        "services",
        "configmaps",
        "events",
        "events.events.k8s.io",
        "namespaces",
        "pods",  # get/list/patch: the pods whose metrics it reads, and their source annotation
        "replicasets.apps",  # list: which pods are a group's
        "poddisruptionbudgets.policy",
        "horizontalpodautoscalers.autoscaling",
    }
    assert resources - everyone == ours


def test_operator_deployment_and_its_pod_pass_schema_and_restricted_pod_security(
    deployed: LocalCluster,
) -> None:
    """The overlay's Deployment passes the API server's validation, and a pod made from its
    template (what the ReplicaSet would create) passes the namespace's enforcing "restricted"
    Pod Security admission. Server-side dry runs: admission runs, nothing is created."""
    deployment = operator_deployment(deployed)
    deployed.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server",
        "--field-manager=e2e-deploy", "-f", "-",
        stdin=yaml.safe_dump(deployment),
    )  # fmt: skip
    template = deployment["spec"]["template"]
    assert template["spec"]["serviceAccountName"] == "retail-operator"
    assert template["spec"]["securityContext"]["runAsUser"] == 10001
    as_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-template-probe", "namespace": NAMESPACE,
                     "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }  # fmt: skip
    deployed.kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(as_pod))

    # The same template with one restricted rule broken is refused: admission is what decides.
    (container, *_) = as_pod["spec"]["containers"]
    container["securityContext"] = container.get("securityContext", {}) | {
        "allowPrivilegeEscalation": True
    }
    refused = deployed.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(as_pod), check=False
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def pod(security: dict[str, object]) -> str:
    """A pod manifest for the operator's namespace whose one container has ``security``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pod-security-probe", "namespace": NAMESPACE},
            "spec": {
                "containers": [{"name": "probe", "image": "busybox", "securityContext": security}]
            },
        }
    )


RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_the_namespace_enforces_restricted_and_admission_refuses_a_violating_pod(
    deployed: LocalCluster,
) -> None:
    labels = deployed.get_json("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The same pod passes admission with a restricted security context and is refused by the
    # PodSecurity admission plugin (server-side dry run: nothing is created) when it may run as
    # root.
    deployed.kubectl("create", "--dry-run=server", "-f", "-", stdin=pod(RESTRICTED))
    refused = deployed.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        stdin=pod(RESTRICTED | {"runAsNonRoot": False}),
        check=False,
    )
    assert refused.returncode != 0
    refusal = 'violates PodSecurity "restricted:latest": runAsNonRoot != true'
    assert refusal in refused.stderr, refused.stderr


def test_sample_retail_model_passes_the_crd_schema(deployed: LocalCluster) -> None:
    # The local overlay created the sample's namespace and ServiceAccount: it applies as is.
    sample = (REPO_ROOT / "deploy" / "samples" / "retailmodel.yaml").read_text()
    deployed.kubectl("apply", "--dry-run=server", "-f", "-", stdin=sample)
    deployed.kubectl("get", "serviceaccount", "retail-predictor", "--namespace=retail")

    broken = yaml.safe_load(sample)
    broken["spec"]["replicas"] = -1
    result = deployed.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(broken), check=False
    )
    assert result.returncode != 0
    assert "replicas" in result.stderr
