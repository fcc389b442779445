"""IRSA for real, on the real node: the predictor pods and the in-cluster operator get AWS
credentials only by exchanging a projected ServiceAccount token (audience sts.amazonaws.com)
at the stand-in's STS, as on EKS; no key is in their spec, nor in a Secret or ConfigMap they
read.

The local cluster has no pod identity webhook: deploy/overlays/local's MutatingAdmissionPolicy
injects the token and the role, from the ServiceAccount's ``eks.amazonaws.com/role-arn``
annotation (deploy/irsa, shared with the EKS overlay). The stand-in checks each token as STS
does (the cluster issuer's signature, the audience, the role's trust in the subject) and
records every call, so the tests can tell the credentials came that way and no other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from retail_tools.onnode import (
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    PREDICTOR_SERVICE_ACCOUNT,
)
from retail_tools.polling import wait_until
from retail_tools.standin import ACCESS_KEY, SECRET_KEY
from tests.e2e.conftest import BUCKET, KEY, NAMESPACE, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def subject(namespace: str, account: str) -> str:
    return f"system:serviceaccount:{namespace}:{account}"


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    """A RetailModel serving on the real node under the predictors' ServiceAccount."""
    name = f"irsa-{uuid.uuid4().hex[:5]}"
    tag = f"e2e-{stack.run}"
    stack.on_node.apply(stack.on_node.retail_model(name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}"))
    stack.wait_condition(name, "Ready", "True")
    try:
        yield name
    finally:
        stack.on_node.remove(NAMESPACE, name)


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["spec"]["containers"]
    return {variable["name"]: variable.get("value", "") for variable in container.get("env", [])}


def product_pods(stack: Stack, model: str) -> list[dict[str, Any]]:
    """The RetailModel's pods and the operator's, as they run."""
    operators = stack.kubectl.get_json("pods", "-n", OPERATOR_NAMESPACE)["items"]
    running = [p for p in operators if p["status"]["phase"] == "Running"]
    pods = stack.running_pods(model) + running
    assert len(pods) >= 3
    return pods


def test_predictor_and_operator_pods_carry_the_token_and_role_and_no_key(
    stack: Stack, model: str
) -> None:
    for pod in product_pods(stack, model):
        env = env_of(pod)
        assert env["AWS_ROLE_ARN"].startswith("arn:aws:iam::123456789012:role/retail-")
        assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == TOKEN_FILE
        assert not set(KEY_NAMES) & set(env)
        (token,) = [v for v in pod["spec"]["volumes"] if v["name"] == "aws-iam-token"]
        (source,) = token["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"


def test_no_key_reaches_them_through_a_secret_or_configmap(stack: Stack, model: str) -> None:
    # Only what these pods read: the shared cluster may hold other runs' objects.
    for pod in product_pods(stack, model):
        namespace = pod["metadata"]["namespace"]
        (container,) = pod["spec"]["containers"]
        assert all("secret" not in volume for volume in pod["spec"]["volumes"])
        assert all("valueFrom" not in v or "secretKeyRef" not in v["valueFrom"]
                   for v in container.get("env", []))  # fmt: skip
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, source
            name = source["configMapRef"]["name"]
            data = stack.kubectl.get_json("configmap", name, "-n", namespace)["data"]
            # Addresses only: the stand-in's endpoint, and the operator's registry (local).
            assert set(data) <= {"AWS_ENDPOINT_URL", "RETAIL_OPERATOR_REGISTRY_URL"}, data
            stored = json.dumps(data)
            assert ACCESS_KEY not in stored and SECRET_KEY not in stored


def test_credentials_came_from_assume_role_with_web_identity_for_each_service_account(
    stack: Stack, model: str
) -> None:
    accepted = {
        (call.role_arn.rpartition("/")[2], call.subject)
        for call in stack.on_node.aws.web_identity_calls
        if not call.error
    }
    assert ("retail-predictor-irsa", subject(NAMESPACE, PREDICTOR_SERVICE_ACCOUNT)) in accepted
    operator = subject(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    assert ("retail-operator-irsa", operator) in accepted


def test_the_pods_token_is_the_clusters_for_sts_only(stack: Stack, model: str) -> None:
    pod = stack.running_pods(model)[0]["metadata"]["name"]
    token = stack.kubectl.output(
        "exec", "-n", NAMESPACE, pod, "--", "python3", "-c", f"print(open({TOKEN_FILE!r}).read())"
    ).strip()

    def review(audience: str) -> dict[str, Any]:
        document = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [audience]},
        }
        created = stack.kubectl.output(
            "create", "-o", "json", "-f", "-", stdin=json.dumps(document)
        )
        return dict(json.loads(created)["status"])

    for_sts = review("sts.amazonaws.com")
    assert for_sts["authenticated"] is True
    assert for_sts["user"]["username"] == subject(NAMESPACE, PREDICTOR_SERVICE_ACCOUNT)
    assert for_sts["audiences"] == ["sts.amazonaws.com"]
    # Not a credential for the API server itself.
    assert not review("https://kubernetes.default.svc.cluster.local").get("authenticated")


@pytest.fixture
def account(stack: Stack) -> Iterator[str]:
    """A ServiceAccount of the predictors' namespace, removed afterwards."""
    name = f"irsa-{uuid.uuid4().hex[:5]}"
    stack.on_node.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": NAMESPACE},
        }
    )
    try:
        yield name
    finally:
        stack.kubectl("delete", "serviceaccount", name, "-n", NAMESPACE, "--ignore-not-found")


def serve_as(stack: Stack, account: str) -> tuple[str, dict[str, Any]]:
    """A RetailModel under ``account``, its first pod once its predictor has started."""
    name = f"as-{account}"
    tag = f"e2e-{stack.run}"
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}", serviceAccountName=account
    )
    stack.on_node.apply(manifest)

    def started() -> dict[str, Any] | None:
        for pod in stack.on_node.pods(NAMESPACE, name):
            statuses = pod["status"].get("containerStatuses", [])
            if statuses and statuses[0].get("state", {}).get("running"):
                return pod
        return None

    return name, dict(wait_until(started, timeout=120, what=f"{name}'s predictor started"))


def never_ready(stack: Stack, name: str, pod: str, seconds: float) -> str:
    """The predictor's log once ``seconds`` have passed without the pod turning Ready."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not stack.running_pods(name), f"{pod} became Ready without credentials"
        time.sleep(2)
    return stack.kubectl.output("logs", "-n", NAMESPACE, pod)


def test_a_pod_whose_service_account_names_no_role_gets_no_credentials(
    stack: Stack, account: str
) -> None:
    name, pod = serve_as(stack, account)
    try:
        env = env_of(pod)
        assert "AWS_ROLE_ARN" not in env and not set(KEY_NAMES) & set(env)
        assert all(v["name"] != "aws-iam-token" for v in pod["spec"].get("volumes", []))
        logs = never_ready(stack, name, pod["metadata"]["name"], 20)
        assert "credentials" in logs.lower(), logs[-2000:]
        calls = {call.subject for call in stack.on_node.aws.web_identity_calls}
        assert subject(NAMESPACE, account) not in calls
    finally:
        stack.on_node.remove(NAMESPACE, name)


@pytest.mark.parametrize(
    ("annotations", "refusal"),
    [
        # A role that does not trust this ServiceAccount (its trust names retail-predictor).
        ({}, "AccessDenied"),
        # The predictors' role, but a token for another audience.
        (
            {"eks.amazonaws.com/audience": "https://kubernetes.default.svc.cluster.local"},
            "InvalidIdentityToken",
        ),
    ],  # fmt: skip
    ids=["a role that does not trust it", "a token for another audience"],
)
def test_sts_refuses_what_aws_would_and_the_pod_never_serves(
    stack: Stack, account: str, annotations: dict[str, str], refusal: str
) -> None:
    role = "arn:aws:iam::123456789012:role/retail-predictor-irsa"
    stack.kubectl(
        "annotate", "serviceaccount", account, "-n", NAMESPACE,
        f"eks.amazonaws.com/role-arn={role}",
        *(f"{key}={value}" for key, value in annotations.items()),
    )  # fmt: skip
    stack.on_node.wait_for_pod_identity(NAMESPACE, account)
    if annotations:  # the audience case: the role trusts the subject, only the token is wrong
        stack.on_node.aws.trust_role(role, subject(NAMESPACE, account))
    name, pod = serve_as(stack, account)
    try:
        assert env_of(pod)["AWS_ROLE_ARN"] == role
        never_ready(stack, name, pod["metadata"]["name"], 20)
        refusals = {
            call.error
            for call in stack.on_node.aws.web_identity_calls
            if call.subject == subject(NAMESPACE, account)
        }
        assert refusals == {refusal}
    finally:
        stack.on_node.remove(NAMESPACE, name)
