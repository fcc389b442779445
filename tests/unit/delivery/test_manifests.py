"""The rendered overlays: least-privilege RBAC, a restricted operator pod, IRSA, sync waves."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.delivery.manifests import find, render

OPERATOR_RULES = {
    ("mlops.retail.io", "retailmodels"): {"list", "watch"},
    ("mlops.retail.io", "retailmodels/status"): {"get", "patch", "update"},
    ("mlops.retail.io", "retailmodelpolicies"): {"get", "list", "watch"},
    ("mlops.retail.io", "retailmodelpolicies/status"): {"patch"},
    # delete: the canary Deployment and ConfigMap when a canary ends
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    # list: a Deployment's current ReplicaSet, whose pods alone are a canary group's evidence
    ("apps", "replicasets"): {"list"},
    # the budgets and the autoscaler a spec asks for
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    # get/list: the canary analysis reads pods' /metrics by pod IP; patch: the model-source
    # annotation that makes the kubelet refresh a changed ConfigMap at once
    ("", "pods"): {"get", "list", "patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "namespaces"): {"list", "watch"},
}


@pytest.fixture(scope="module", params=["local", "eks"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


@pytest.fixture(scope="module")
def eks() -> list[dict[str, Any]]:
    return render("eks")


def wave(document: dict[str, Any]) -> str | None:
    annotations: dict[str, str] = document["metadata"].get("annotations", {})
    return annotations.get("argocd.argoproj.io/sync-wave")


def test_cluster_role_grants_exactly_what_the_operator_needs(
    rendered: list[dict[str, Any]],
) -> None:
    role = find(rendered, "ClusterRole", "retail-operator")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == OPERATOR_RULES


def test_leader_election_may_touch_only_its_own_lease_in_its_own_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    role = find(rendered, "Role", "retail-operator-leader-election")
    assert role["metadata"]["namespace"] == "retailmodel-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["retail-operator"],
            "verbs": ["get", "update"],
        },
    ]
    binding = find(rendered, "RoleBinding", "retail-operator-leader-election")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "retail-operator-leader-election",
    }
    assert binding["subjects"][0]["name"] == "retail-operator"


def test_two_operator_replicas_roll_without_a_gap(rendered: list[dict[str, Any]]) -> None:
    deployment = find(rendered, "Deployment", "retail-operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        "metrics": 8081,
    }


def test_binding_names_the_operator_service_account(rendered: list[dict[str, Any]]) -> None:
    binding = find(rendered, "ClusterRoleBinding", "retail-operator")
    assert binding["roleRef"]["name"] == "retail-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "retail-operator", "namespace": "retailmodel-system"}
    ]


def test_operator_pod_is_restricted(rendered: list[dict[str, Any]]) -> None:
    deployment = find(rendered, "Deployment", "retail-operator")
    assert deployment["metadata"]["namespace"] == "retailmodel-system"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "retail-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    (volume,) = pod["volumes"]
    assert volume["name"] == "tmp" and "emptyDir" in volume


def test_namespace_enforces_the_restricted_pod_security_standard(
    rendered: list[dict[str, Any]],
) -> None:
    namespace = find(rendered, "Namespace", "retailmodel-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_sync_waves_order_crd_then_operator_then_models(eks: list[dict[str, Any]]) -> None:
    assert wave(find(eks, "CustomResourceDefinition", "retailmodels.mlops.retail.io")) == "-2"
    operator_parts = {
        "Namespace": "retailmodel-system",
        "ServiceAccount": "retail-operator",
        "ClusterRole": "retail-operator",
        "ClusterRoleBinding": "retail-operator",
        "Role": "retail-operator-leader-election",
        "RoleBinding": "retail-operator-leader-election",
        "Deployment": "retail-operator",
    }
    for kind, name in operator_parts.items():
        assert wave(find(eks, kind, name)) == "-1", kind
    assert wave(find(eks, "Namespace", "retail")) == "-1"
    assert wave(find(eks, "ServiceAccount", "retail-predictor")) == "-1"
    model = find(eks, "RetailModel", "price-sensitivity")
    assert wave(model) == "0"
    options = model["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert "SkipDryRunOnMissingResource=true" in options


def test_eks_overlay_wires_irsa_for_operator_and_predictor(eks: list[dict[str, Any]]) -> None:
    operator = find(eks, "ServiceAccount", "retail-operator")
    predictor = find(eks, "ServiceAccount", "retail-predictor")
    role_arn = "eks.amazonaws.com/role-arn"
    assert operator["metadata"]["annotations"][role_arn].startswith("arn:aws:iam::")
    assert predictor["metadata"]["namespace"] == "retail"
    assert predictor["metadata"]["annotations"][role_arn].startswith("arn:aws:iam::")
    model = find(eks, "RetailModel", "price-sensitivity")
    assert model["spec"]["serviceAccountName"] == "retail-predictor"
    deployment = find(eks, "Deployment", "retail-operator")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert ".dkr.ecr." in image and "/mlops/retail-operator:" in image


def test_predictors_get_their_namespace_and_service_account(
    rendered: list[dict[str, Any]],
) -> None:
    namespace = find(rendered, "Namespace", "retail")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    account = find(rendered, "ServiceAccount", "retail-predictor")
    assert account["metadata"]["namespace"] == "retail"
    assert account["automountServiceAccountToken"] is False


def test_local_overlay_has_no_custom_resources() -> None:
    # A custom resource cannot be applied in the same request that creates its CRD.
    assert all(d["kind"] != "RetailModel" for d in render("local"))


def operator_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(documents, "Deployment", "retail-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_local_operator_reads_image_signatures_from_the_registry_pods_reach() -> None:
    container = operator_container(render("local"))
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    sources = [source["configMapRef"]["name"] for source in container["envFrom"]]

    assert env["RETAIL_OPERATOR_REGISTRY_AUTH"] == "none"
    # RETAIL_OPERATOR_REGISTRY_URL: the bridge gateway's registry port (onnode.registry_config)
    assert "local-registry" in sources


def test_the_eks_operator_reads_image_signatures_from_ecr(eks: list[dict[str, Any]]) -> None:
    container = operator_container(eks)
    names = {variable["name"] for variable in container.get("env", [])}
    names |= {
        name
        for source in container.get("envFrom", [])
        for name in (source.get("configMapRef") or {}).values()
    }

    assert not names & {"RETAIL_OPERATOR_REGISTRY_AUTH", "RETAIL_OPERATOR_REGISTRY_URL"}
    assert "local-registry" not in names


def roles(documents: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["metadata"]["annotations"][
            "eks.amazonaws.com/role-arn"
        ]
        for d in documents
        if d["kind"] == "ServiceAccount"
    }


def test_the_local_cluster_names_exactly_the_iam_roles_eks_does(eks: list[dict[str, Any]]) -> None:
    assert (
        roles(render("local"))
        == roles(eks)
        == {
            ("retailmodel-system", "retail-operator"): (
                "arn:aws:iam::123456789012:role/retail-operator-irsa"
            ),
            ("retail", "retail-predictor"): "arn:aws:iam::123456789012:role/retail-predictor-irsa",
        }
    )


def test_no_overlay_carries_aws_keys_or_a_secret(rendered: list[dict[str, Any]]) -> None:
    assert not [d for d in rendered if d["kind"] == "Secret"]
    text = yaml.safe_dump_all(rendered)
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    operator = find(rendered, "Deployment", "retail-operator")
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert all("secretRef" not in source for source in container.get("envFrom", []))


def test_the_local_pod_identity_policy_stands_in_for_the_eks_webhook() -> None:
    local = render("local")
    policy = find(local, "MutatingAdmissionPolicy", "retailmodel-pod-identity")
    assert policy["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ServiceAccount"}
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert rule["resources"] == ["pods"] and rule["operations"] == ["CREATE"]
    text = yaml.safe_dump(policy)
    for injected in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "sts.amazonaws.com"):
        assert injected in text
    binding = find(local, "MutatingAdmissionPolicyBinding", "retailmodel-pod-identity")
    # The pod's own namespace's ServiceAccounts are the parameters (no namespace named).
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    # In place before the operator's pods (wave -1) are created.
    assert wave(policy) == wave(binding) == "-2"
    assert all(d["kind"] != "MutatingAdmissionPolicy" for d in render("eks"))
