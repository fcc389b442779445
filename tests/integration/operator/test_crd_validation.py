"""The API server rejects malformed RetailModels, naming the field: bad input never reaches the
operator. No operator needed, only the CRD."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
import yaml
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.cluster

VALID: dict[str, Any] = {
    "apiVersion": "mlops.retail.io/v1alpha1",
    "kind": "RetailModel",
    "metadata": {"name": "valid"},
    "spec": {
        "image": {
            "repository": "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api",
            "tag": "v20241009-abc123",
        },
        "model": {"s3Uri": "s3://mlops-retail-forecast-models/models/model.ubj"},
    },
}


def mutate(path: str, value: Any) -> dict[str, Any]:
    """VALID with ``path`` (dotted) set to ``value``; the value ``...`` deletes the field."""
    document = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return document


MALFORMED = [
    ("spec.image", ..., "spec.image: Required value"),
    ("spec.image.tag", ..., "spec.image.tag: Required value"),
    ("spec.model.s3Uri", ..., "spec.model.s3Uri: Required value"),
    ("spec.image.repository", "docker.io/library/nginx", "spec.image.repository"),
    ("spec.image.tag", "has space", "spec.image.tag"),
    ("spec.model.s3Uri", "https://bucket/key", "spec.model.s3Uri"),
    ("spec.model.sha256", "not-a-digest", "spec.model.sha256"),
    ("spec.replicas", -1, "spec.replicas"),
    ("spec.replicas", 1000, "spec.replicas"),
    ("spec.replicas", "two", "spec.replicas"),
    ("spec.reloadIntervalSeconds", 1, "spec.reloadIntervalSeconds"),
    ("spec.scanPolicy", {"blockSeverity": "SEVERE"}, "spec.scanPolicy.blockSeverity"),
    ("spec.scanPolicy", {"requireScan": "yes"}, "spec.scanPolicy.requireScan"),
    ("spec.scanPolicy", {"ignoreCVEs": "CVE-1"}, "spec.scanPolicy.ignoreCVEs"),
    ("spec.resources", {"limits": {"cpu": "lots"}}, "spec.resources.limits.cpu"),
    ("spec.resources", {"requests": {"cpu": "-1"}}, "spec.resources.requests[cpu]"),
    ("spec.resources", {"limits": {"memory": "-2Gi"}}, "must not be negative"),
    ("spec.serviceAccountName", "Not_A_Name", "spec.serviceAccountName"),
    (
        "spec.scanPolicy",
        {"exceptions": [{"id": "CVE-2026-1", "expires": "2027-01-01T00:00:00Z"}]},
        "spec.scanPolicy.exceptions[0].reason: Required value",
    ),
    (
        "spec.scanPolicy",
        {"exceptions": [{"id": "CVE-2026-1", "reason": "no fix yet"}]},
        "spec.scanPolicy.exceptions[0].expires: Required value",
    ),
    (
        "spec.scanPolicy",
        {"exceptions": [{"id": "CVE-2026-1", "reason": "no fix yet", "expires": "next week"}]},
        "spec.scanPolicy.exceptions[0].expires",
    ),
    ("spec.nodeSelector", {"pool": 7}, "spec.nodeSelector.pool"),
    ("spec.tolerations", [{"key": "k", "operator": "Maybe"}], "spec.tolerations[0].operator"),
    (
        "spec.tolerations",
        [{"key": "k", "operator": "Exists", "value": "v"}],
        "spec.tolerations[0]: Invalid value: a toleration with operator Exists takes no value",
    ),
    (
        "spec.tolerations",
        [{"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"}],
        "tolerationSeconds applies to the NoExecute effect only",
    ),
    ("spec.envFrom", [{"secretRef": {}}], "spec.envFrom[0].secretRef.name: Required value"),
    ("spec.rollout", {"strategy": "BlueGreen"}, "spec.rollout.strategy"),
    ("spec.rollout", {"canary": {"replicas": 0}}, "spec.rollout.canary.replicas"),
    *[
        ("spec.rollout", {"canary": {"analysis": {field: value}}}, f"analysis.{field}")
        for field, value in [
            ("minRequests", 0),  # zero requests would let silence promote
            ("minRequests", 49),  # below 50 no test can reject: an analysis that cannot fail
            ("maxErrorRate", 1),
            ("maxPredictionShift", 1.0),
            ("durationSeconds", 1),
            ("maxErrorRate", 1.5),
            ("maxLatencyRatio", 0.5),
            ("maxPredictionShift", -0.1),
        ]
    ],
    *[
        ("spec.monitoring", {"drift": {field: value}}, f"spec.monitoring.drift.{field}")
        for field, value in [
            ("minRows", 99),  # a chi-squared test over fifty bins wants a few rows in each
            ("maxFeaturePSI", 0),  # sampling noise alone would be drift
            ("maxPredictionPSI", -0.5),
            ("windowSeconds", 5),
            ("enabled", "yes"),
        ]
    ],
]


@pytest.mark.parametrize(
    ("path", "value", "named"), MALFORMED, ids=[m[0] + "=" + repr(m[1])[:20] for m in MALFORMED]
)
def test_malformed_spec_is_rejected_naming_the_field(
    local_cluster: LocalCluster, crd_installed: None, path: str, value: Any, named: str
) -> None:
    document = mutate(path, value)
    document["metadata"]["name"] = f"bad-{uuid.uuid4().hex[:6]}"
    result = local_cluster.kubectl(
        "create", "-n", "default", "-f", "-", stdin=yaml.safe_dump(document), check=False
    )
    assert result.returncode != 0, f"accepted: {document['spec']}"
    assert "is invalid" in result.stderr
    assert named in result.stderr


def test_a_deadline_before_the_duration_is_refused(
    local_cluster: LocalCluster, crd_installed: None
) -> None:
    analysis = {"durationSeconds": 120, "maxDurationSeconds": 60}
    document = mutate("spec.rollout", {"canary": {"analysis": analysis}})
    document["metadata"]["name"] = f"bad-{uuid.uuid4().hex[:6]}"
    result = local_cluster.kubectl(
        "create", "-n", "default", "-f", "-", stdin=yaml.safe_dump(document), check=False
    )
    assert result.returncode != 0 and "must be at least durationSeconds" in result.stderr


@pytest.mark.parametrize(
    "name",
    ["dotted.name", "1-leading-digit", "a" * 51],
    ids=["a dot", "a leading digit", "longer than 50"],
)
def test_a_name_a_child_could_not_carry_is_refused(
    local_cluster: LocalCluster, crd_installed: None, name: str
) -> None:
    """The name becomes the Service's, a label value and each child's prefix: one that any of
    them would refuse is refused at the API server, not left without a status."""
    document = copy.deepcopy(VALID)
    document["metadata"]["name"] = name
    result = local_cluster.kubectl(
        "create", "-n", "default", "-f", "-", stdin=yaml.safe_dump(document), check=False
    )
    assert result.returncode != 0, f"accepted: {name}"
    assert "metadata.name must be a DNS-1035 label of at most 50 characters" in result.stderr


def test_valid_spec_is_accepted_with_defaults(
    local_cluster: LocalCluster, crd_installed: None
) -> None:
    document = copy.deepcopy(VALID)
    document["metadata"]["name"] = f"ok-{uuid.uuid4().hex[:6]}"
    created = yaml.safe_load(
        local_cluster.kubectl(
            "create",
            "-n",
            "default",
            "--dry-run=server",
            "-o",
            "yaml",
            "-f",
            "-",
            stdin=yaml.safe_dump(document),
        ).stdout
    )
    spec = created["spec"]
    assert spec["replicas"] == 1 and spec["reloadIntervalSeconds"] == 30
    assert spec["scanPolicy"] == {"blockSeverity": "HIGH", "requireScan": True}
    assert spec["rollout"] == {
        "strategy": "Immediate",
        "canary": {
            "replicas": 1,
            "analysis": {
                "durationSeconds": 120,
                "minRequests": 200,
                "maxErrorRate": 0.01,
                "maxLatencyRatio": 1.5,
                "maxPredictionShift": 0.03,
            },
        },
    }


def test_drift_is_off_unless_asked_for_and_conservative_when_it_is(
    local_cluster: LocalCluster, crd_installed: None
) -> None:
    def created(document: dict[str, Any]) -> dict[str, Any]:
        document["metadata"]["name"] = f"ok-{uuid.uuid4().hex[:6]}"
        command = ("create", "-n", "default", "--dry-run=server", "-o", "yaml", "-f", "-")
        result = local_cluster.kubectl(*command, stdin=yaml.safe_dump(document))
        return dict(yaml.safe_load(result.stdout)["spec"])

    assert "monitoring" not in created(copy.deepcopy(VALID))
    assert created(mutate("spec.monitoring", {"drift": {}}))["monitoring"]["drift"] == {
        "enabled": True,
        "windowSeconds": 3600,
        "minRows": 1000,
        "maxPredictionPSI": 0.25,
        "maxFeaturePSI": 0.25,
    }


def test_kubectl_explain_teaches_the_rollout(
    local_cluster: LocalCluster, crd_installed: None
) -> None:
    explained = local_cluster.kubectl(
        "explain", "retailmodels.spec.rollout.canary.analysis.minRequests"
    ).stdout
    assert "never promotes" in explained
