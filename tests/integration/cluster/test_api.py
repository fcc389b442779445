"""The API server's own machinery: CRDs with schema validation, and RBAC that really denies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_tools.cluster.cluster import ClusterError
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.cluster

GROUP = "widgets.test.retail.io"


@pytest.fixture
def widget_crd(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespaced CRD with a strict schema; a unique plural so reruns never collide."""
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    name = f"{plural}.{GROUP}"
    local_cluster.apply(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: {plural}, singular: {plural[:-1]}, kind: {plural.capitalize()[:-1]}}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size, color]
              properties:
                size: {{type: integer, minimum: 1, maximum: 10}}
                color: {{type: string, enum: [red, green]}}
""")
    local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    try:
        yield plural
    finally:
        local_cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


def widget(plural: str, name: str, spec: str) -> str:
    kind = plural.capitalize()[:-1]
    return f"""
apiVersion: {GROUP}/v1
kind: {kind}
metadata: {{name: {name}}}
spec: {spec}
"""


def test_a_custom_resource_is_stored_when_valid_and_rejected_when_not(
    local_cluster: LocalCluster, widget_crd: str, cluster_namespace: str
) -> None:
    local_cluster.apply(widget(widget_crd, "good", "{size: 3, color: red}"), cluster_namespace)
    stored = local_cluster.get_json(f"{widget_crd}.{GROUP}", "good", "-n", cluster_namespace)
    assert stored["spec"] == {"size": 3, "color": "red"}

    too_big = widget(widget_crd, "too-big", "{size: 11, color: red}")
    with pytest.raises(ClusterError, match=r"spec\.size"):
        local_cluster.apply(too_big, cluster_namespace)
    wrong_color = widget(widget_crd, "blue", "{size: 2, color: blue}")
    with pytest.raises(ClusterError, match=r"spec\.color"):
        local_cluster.apply(wrong_color, cluster_namespace)
    missing = widget(widget_crd, "missing", "{size: 2}")
    with pytest.raises(ClusterError, match=r"spec\.color.*Required"):
        local_cluster.apply(missing, cluster_namespace)

    listed = local_cluster.get_json(f"{widget_crd}.{GROUP}", "-n", cluster_namespace)["items"]
    assert [item["metadata"]["name"] for item in listed] == ["good"]


def test_rbac_denies_a_service_account_until_a_role_allows_it(
    local_cluster: LocalCluster, cluster_namespace: str, tmp_path: Path
) -> None:
    ns = ("-n", cluster_namespace)
    local_cluster.kubectl("create", "serviceaccount", "nobody", *ns)
    subject = f"system:serviceaccount:{cluster_namespace}:nobody"
    # A real token signed by the API server's service-account key, used as a real client would.
    token = local_cluster.kubectl("create", "token", "nobody", *ns).stdout.strip()
    as_nobody = local_cluster.token_kubeconfig(token, tmp_path / "nobody.kubeconfig")

    def can_list_pods() -> str:
        result = local_cluster.kubectl(
            "auth", "can-i", "list", "pods", *ns, f"--as={subject}", check=False
        )
        return result.stdout.strip()

    assert can_list_pods() == "no"
    denied = local_cluster.kubectl("get", "pods", *ns, kubeconfig=as_nobody, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    local_cluster.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", *ns)
    local_cluster.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=pod-reader",
        f"--serviceaccount={cluster_namespace}:nobody",
        *ns,
    )

    assert can_list_pods() == "yes"
    allowed = local_cluster.kubectl("get", "pods", *ns, kubeconfig=as_nobody, check=False)
    assert allowed.returncode == 0, allowed.stderr
    # The role is namespaced: other namespaces stay closed.
    elsewhere = local_cluster.kubectl(
        "get", "pods", "-n", "kube-system", kubeconfig=as_nobody, check=False
    )
    assert "forbidden" in elsewhere.stderr.lower()
