"""Least privilege by construction, on the real API server with the operator's own token: the
overlay's RBAC and ValidatingAdmissionPolicies applied as shipped, the token of its
ServiceAccount (retailmodel-system/retail-operator) taken from the TokenRequest API. It cannot
write what it does not manage, nor change a pod beyond its one annotation, and with that token
alone it still does its whole job."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.operator.conftest import ROOT, OperatorProcess, Scenario
from tests.support.aws import free_port
from tests.support.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

NAMESPACE = "retailmodel-system"
SOURCE = "mlops.retail.io/model-source"


@pytest.fixture(scope="module")
def operator_token(
    local_cluster: LocalCluster, crd_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The overlay as shipped, but for the operator's Deployment; a kubeconfig holding only
    its ServiceAccount's token."""
    rendered = local_cluster.kubectl("kustomize", str(ROOT / "deploy" / "overlays" / "local"))
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] != "Deployment"]
    local_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=least-privilege-test",
        "-f", "-", stdin=yaml.safe_dump_all(documents),
    )  # fmt: skip
    token = local_cluster.kubectl(
        "create", "token", "retail-operator", "-n", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    return local_cluster.token_kubeconfig(token, tmp_path_factory.mktemp("token") / "kubeconfig")


def as_operator(cluster: LocalCluster, token: Path, *args: str, stdin: str | None = None) -> Any:
    return cluster.kubectl(*args, stdin=stdin, check=False, kubeconfig=token)


def refused(result: Any, policy: str = "retail-operator-manages-only-its-own") -> bool:
    return bool(result.returncode != 0 and f"ValidatingAdmissionPolicy '{policy}'" in result.stderr)


def test_it_cannot_write_what_it_does_not_manage(scenario: Scenario, operator_token: Path) -> None:
    cluster, ns = scenario.cluster, scenario.namespace
    kube_system = as_operator(
        cluster, operator_token, "create", "configmap", f"evil-{ns}", "-n", "kube-system",
        "--from-literal=a=b",
    )  # fmt: skip
    assert refused(kube_system), kube_system.stderr
    cluster.kubectl("create", "configmap", "aws-auth", "-n", ns, "--from-literal=mapRoles=[]")
    patched = as_operator(
        cluster, operator_token, "patch", "configmap", "aws-auth", "-n", ns,
        "-p", '{"data": {"mapRoles": "- rolearn: arn:aws:iam::1:role/evil"}}',
    )  # fmt: skip
    assert refused(patched), patched.stderr
    deleted = as_operator(cluster, operator_token, "delete", "configmap", "aws-auth", "-n", ns)
    assert refused(deleted), deleted.stderr
    unlabelled = as_operator(
        cluster, operator_token, "create", "deployment", "miner", "--image=miner", "-n", ns
    )
    assert refused(unlabelled), unlabelled.stderr
    labelled_but_no_owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "miner",
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "retail-operator"},
        },
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "miner"}]},
            },
        },
    }
    impostor = as_operator(
        cluster, operator_token, "create", "-f", "-", stdin=json.dumps(labelled_but_no_owner)
    )
    assert refused(impostor), impostor.stderr
    assert cluster.kubectl("get", "configmap", "aws-auth", "-n", ns, "-o", "json").stdout


@pytest.fixture
def operator_as_itself(
    scenario: Scenario, operator_token: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator with nothing but its own token, in place of the session's (admin) one."""
    session = scenario.operator
    session.stop()
    port = free_port()
    env = session.env | {
        "KUBECONFIG": str(operator_token),
        "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
        "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
        "RETAIL_OPERATOR_LEASE_NAMESPACE": NAMESPACE,
        "RETAIL_OPERATOR_LEASE_NAME": "retail-operator",  # the one its Role names
    }
    process = OperatorProcess(env, tmp_path / "operator.log", port)
    process.start()
    scenario.operator = process  # its log tail on a timeout
    try:
        yield process
    finally:
        process.stop()
        scenario.operator = session
        session.start()


def test_with_its_own_token_alone_it_does_its_whole_job(
    scenario: Scenario, operator_token: Path, operator_as_itself: OperatorProcess
) -> None:
    scenario.image("v1")
    scenario.apply(scenario.manifest("prices", "v1", scenario.model("models/a.ubj")))
    scenario.wait_condition("prices", "Ready", "True")
    # A hand edit is reverted (an update of a child it manages)…
    scenario.cluster.kubectl(
        "scale", "deployment", "prices", "-n", scenario.namespace, "--replicas=5"
    )
    scenario.wait_for(
        "the hand edit reverted",
        lambda: (scenario.get("deployment", "prices") or {}).get("spec", {}).get("replicas") == 2,
    )
    # …and a new model reaches the running pods through their one annotation.
    scenario.apply(scenario.manifest("prices", "v1", scenario.model("models/b.ubj")))

    def annotated() -> bool:
        pods = scenario.cluster.get_json(
            "pods", "-n", scenario.namespace, "-l", "mlops.retail.io/retailmodel=prices"
        )["items"]
        return bool(pods) and all(SOURCE in (p["metadata"].get("annotations") or {}) for p in pods)

    scenario.wait_for("the pods annotated with the new model source", annotated)
    assert "Forbidden" not in operator_as_itself.logs()

    # Its pods: the annotation yes, anything else no.
    pod = scenario.cluster.get_json(
        "pods", "-n", scenario.namespace, "-l", "mlops.retail.io/retailmodel=prices"
    )["items"][0]["metadata"]["name"]
    allowed = as_operator(
        scenario.cluster, operator_token, "annotate", "pod", pod, "-n", scenario.namespace,
        f"{SOURCE}=feedface", "--overwrite",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    image = as_operator(
        scenario.cluster, operator_token, "patch", "pod", pod, "-n", scenario.namespace,
        "-p", '{"spec": {"containers": [{"name": "predictor", "image": "miner"}]}}',
    )  # fmt: skip
    assert refused(image, "retail-operator-annotates-pods-only"), image.stderr
    label = as_operator(
        scenario.cluster, operator_token, "label", "pod", pod, "-n", scenario.namespace,
        "team=evil",
    )  # fmt: skip
    assert refused(label, "retail-operator-annotates-pods-only"), label.stderr


NAMESPACED_ACCOUNT = "retail-operator-namespaced"


@contextlib.contextmanager
def another_namespace(scenario: Scenario, prefix: str) -> Iterator[Scenario]:
    """This test's world in a namespace of its own (the same registry, bucket and tags)."""
    namespace = scenario.cluster.test_namespace(prefix)
    try:
        yield replace(scenario, namespace=namespace)
    finally:
        scenario.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def neighbour(scenario: Scenario) -> Iterator[Scenario]:
    """A second namespace the namespaced install serves."""
    with another_namespace(scenario, "rm-neighbour") as served:
        yield served


@pytest.fixture
def stranger(scenario: Scenario) -> Iterator[Scenario]:
    """A namespace it does not serve."""
    with another_namespace(scenario, "other") as unserved:
        yield unserved


@pytest.fixture
def namespaced_install(scenario: Scenario, neighbour: Scenario, tmp_path: Path) -> Iterator[Path]:
    """deploy/overlays/namespaced's RBAC, serving this test's two namespaces only (its tenant
    Role and RoleBinding in each), for a ServiceAccount of its own (the cluster-wide install's
    account is bound cluster-wide by the other tests here): its token's kubeconfig."""
    cluster = scenario.cluster
    served = (scenario.namespace, neighbour.namespace)
    rendered = cluster.kubectl("kustomize", str(ROOT / "deploy" / "overlays" / "namespaced"))
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    cluster_roles = {d["metadata"]["name"] for d in documents if d["kind"] == "ClusterRole"}
    assert cluster_roles == {"retail-operator-policy-reader"}  # nothing cluster-wide to write
    kept = []
    for document in documents:
        meta = document["metadata"]
        tenant = document["kind"] in {"Role", "RoleBinding"} and meta["namespace"] == "retail"
        if not tenant and document["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            continue  # the Lease's Role and binding stay the cluster-wide install's
        for subject in document.get("subjects", []):
            subject["name"] = NAMESPACED_ACCOUNT
        if tenant:  # one copy in each namespace served
            for namespace in served:
                copied = copy.deepcopy(document)
                copied["metadata"]["namespace"] = namespace
                kept.append(copied)
            continue
        meta["name"] = f"{meta['name']}-{scenario.namespace}"
        if "roleRef" in document:
            document["roleRef"]["name"] = f"{document['roleRef']['name']}-{scenario.namespace}"
        kept.append(document)
    cluster.kubectl("create", "serviceaccount", NAMESPACED_ACCOUNT, "-n", NAMESPACE, check=False)
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(kept))
    token = cluster.kubectl(
        "create", "token", NAMESPACED_ACCOUNT, "-n", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    try:
        yield cluster.token_kubeconfig(token, tmp_path / "namespaced-kubeconfig")
    finally:
        for document in kept:
            if document["kind"].startswith("Cluster"):
                cluster.kubectl(
                    "delete", document["kind"].lower(), document["metadata"]["name"], check=False
                )


def test_the_namespaced_install_does_its_job_in_its_namespaces_and_nowhere_else(
    scenario: Scenario,
    neighbour: Scenario,
    stranger: Scenario,
    namespaced_install: Path,
    tmp_path: Path,
) -> None:
    """Two namespaces served (an informer of RetailModels in each): both roll out; a third,
    not served, is neither readable nor writable, and its RetailModel is left alone."""
    for verb, args in (
        ("create", ("configmap", "x", "-n", stranger.namespace, "--from-literal=a=b")),
        ("get", ("pods", "-n", stranger.namespace)),
        ("get", ("deployments", "-n", "kube-system")),
    ):
        result = as_operator(scenario.cluster, namespaced_install, verb, *args)
        assert result.returncode != 0 and "forbidden" in result.stderr, result.stderr

    session = scenario.operator
    session.stop()
    port = free_port()
    env = session.env | {
        "KUBECONFIG": str(namespaced_install),
        "RETAIL_OPERATOR_NAMESPACES": f"{scenario.namespace},{neighbour.namespace}",
        "RETAIL_OPERATOR_LEADER_ELECTION": "false",  # the Lease's Role names another account
        "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
        "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
    }
    namespaced = OperatorProcess(env, tmp_path / "namespaced.log", port)
    namespaced.start()
    try:
        scenario.operator = neighbour.operator = namespaced
        scenario.image("v1")
        for each in (scenario, neighbour, stranger):
            manifest = scenario.manifest("prices", "v1", scenario.model())
            manifest["metadata"]["namespace"] = each.namespace
            each.apply(manifest)
        scenario.wait_condition("prices", "Ready", "True")
        neighbour.wait_condition("prices", "Ready", "True")
        assert "status" not in stranger.get("retailmodel", "prices")  # not served: not looked at
        assert stranger.get("deployment", "prices") is None
        assert "Forbidden" not in namespaced.logs(), namespaced.logs()[-3000:]
    finally:
        namespaced.stop()
        scenario.operator = session
        session.start()
