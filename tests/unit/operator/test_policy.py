"""The platform's policy, pure: which policies apply where, and every rule a tenant's spec can
break by being looser (never by being stricter)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from retail_operator import policy
from retail_operator.policy import Policy
from retail_operator.spec import RetailModelSpec

NOW = datetime(2026, 12, 5, tzinfo=UTC)
REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
ANOTHER_ACCOUNT = {"repository": REPO.replace("1234", "9999"), "tag": "v1"}
ANOTHER_REPOSITORY = {"repository": REPO.replace("mlops/", "other/"), "tag": "v1"}


def spec(**fields: Any) -> RetailModelSpec:
    return RetailModelSpec.from_body(
        {
            "image": {"repository": REPO, "tag": "v1"},
            "model": {"s3Uri": "s3://models/prices/model.ubj"},
            **fields,
        }
    )


def rules(name: str = "default", **spec_fields: Any) -> Policy:
    return Policy.from_body({"metadata": {"name": name}, "spec": spec_fields})


STRICT = rules(
    images={"allowedAccounts": ["123456789012"], "allowedRepositories": ["mlops/*"]},
    scanning={"maxBlockSeverity": "HIGH", "maxExceptionDays": 30},
    pods={"allowedServiceAccounts": ["retail-predictor"], "allowedEnvFrom": ["ConfigMap/aws"]},
    models={"maxBytes": 1_000_000, "bucketOwner": "123456789012", "allowedBuckets": ["models"]},
)


def broken(tenant: RetailModelSpec, *policies: Policy) -> list[str]:
    return [v.rule for v in policy.violations(tenant, policies or (STRICT,), NOW)]


def test_a_spec_within_the_policy_or_stricter_passes() -> None:
    assert broken(spec()) == []
    stricter = spec(
        scanPolicy={"blockSeverity": "LOW"},
        serviceAccountName="retail-predictor",
        envFrom=[{"configMapRef": {"name": "aws"}}],
    )
    assert broken(stricter) == []


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"image": ANOTHER_ACCOUNT}, "images.allowedAccounts"),
        ({"image": ANOTHER_REPOSITORY}, "images.allowedRepositories"),
        ({"scanPolicy": {"blockSeverity": "CRITICAL"}}, "scanning.maxBlockSeverity"),
        ({"scanPolicy": {"blockSeverity": "NONE"}}, "scanning.maxBlockSeverity"),
        ({"scanPolicy": {"requireScan": False}}, "scanning.allowUnscanned"),
        ({"scanPolicy": {"ignoreCVEs": ["CVE-2026-1"]}}, "scanning.allowIgnoreCVEs"),
        (
            {"scanPolicy": {"exceptions": [
                {"id": "CVE-1", "reason": "later", "expires": "2027-06-01T00:00:00Z"}]}},
            "scanning.maxExceptionDays",
        ),
        ({"serviceAccountName": "admin-role"}, "pods.allowedServiceAccounts"),
        ({"envFrom": [{"secretRef": {"name": "aws"}}]}, "pods.allowedEnvFrom"),
        ({"model": {"s3Uri": "s3://elsewhere/m.ubj"}}, "models.allowedBuckets"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_each_looser_field_breaks_its_rule(fields: dict[str, Any], rule: str) -> None:
    assert broken(spec(**fields)) == [rule]


def test_the_message_names_the_policy_the_rule_and_the_value() -> None:
    (violation,) = policy.violations(spec(scanPolicy={"blockSeverity": "NONE"}), [STRICT], NOW)
    assert str(violation) == (
        "RetailModelPolicy default: scanning.maxBlockSeverity: scanPolicy.blockSeverity NONE "
        "blocks less than HIGH"
    )


def test_default_applies_everywhere_and_the_others_by_namespace_labels() -> None:
    team = rules(
        "team-a",
        namespaceSelector={
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}],
        },
    )
    everyone = [STRICT, team]
    assert [p.name for p in policy.applying(everyone, {})] == ["default"]
    assert [p.name for p in policy.applying(everyone, {"team": "a"})] == ["default"]
    prod = {"team": "a", "tier": "prod"}
    assert [p.name for p in policy.applying(everyone, prod)] == ["default", "team-a"]
    assert team.describe_scope() == "namespaces with team=a, tier In prod"
    assert STRICT.describe_scope() == "all"


def test_every_applying_policy_must_be_met() -> None:
    tenant = spec(scanPolicy={"blockSeverity": "HIGH"})
    medium = rules("prod", namespaceSelector={}, scanning={"maxBlockSeverity": "MEDIUM"})
    assert [(v.policy, v.rule) for v in policy.violations(tenant, [STRICT, medium], NOW)] == [
        ("prod", "scanning.maxBlockSeverity")
    ]


def test_the_largest_model_and_the_bucket_owner_are_required_of_the_children() -> None:
    assert policy.model_too_large(999_999, [STRICT]) is None
    too_large = policy.model_too_large(1_000_001, [STRICT])
    assert too_large is not None and too_large.rule == "models.maxBytes"
    assert policy.requirements([STRICT]) == policy.Requirements("123456789012", 1_000_000)
    other = rules("other", namespaceSelector={}, models={"bucketOwner": "210987654321"})
    assert "models.bucketOwner" in broken(spec(), STRICT, other)


def test_a_running_image_from_an_account_no_longer_allowed_is_refused() -> None:
    assert policy.image_refused(f"{REPO}@sha256:{'a' * 64}", [STRICT]) is None
    elsewhere = REPO.replace("1234", "9999")
    refused = policy.image_refused(f"{elsewhere}@sha256:{'a' * 64}", [STRICT])
    assert refused is not None and refused.rule == "images.allowedAccounts"


def test_no_policy_means_no_rule() -> None:
    assert policy.violations(spec(scanPolicy={"blockSeverity": "NONE"}), [], NOW) == []
