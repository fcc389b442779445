"""``ecr bootstrap`` on moto's ECR: creates what is described, is idempotent, fixes drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from retail_tools.ecr.bootstrap import REGISTRY, bootstrap
from retail_tools.ecr.config import RegistryConfig, load_config
from retail_tools.standin import AwsStandIn

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

pytestmark = pytest.mark.aws

REPO_ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"


@pytest.fixture
def config() -> RegistryConfig:
    return load_config(REPO_ROOT / "deploy" / "ecr" / "repositories.yaml")


@pytest.fixture
def ecr(aws_env: AwsStandIn) -> ECRClient:
    return cast("ECRClient", aws_env.client("ecr"))


def test_first_run_creates_repositories_as_described(
    ecr: ECRClient, config: RegistryConfig
) -> None:
    reports = bootstrap(ecr, config, ACCOUNT)

    assert [r.name for r in reports] == [
        REGISTRY,
        "mlops/retail-api",
        "mlops/retail-operator",
        "mlops/train-model",
    ]
    assert all(r.created and not r.problems for r in reports[1:])
    assert reports[0].changes == ("scanning BASIC → ENHANCED (CONTINUOUS_SCAN)",)
    scanning = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
    assert scanning["scanType"] == "ENHANCED"
    assert scanning["rules"] == [
        {"scanFrequency": "CONTINUOUS_SCAN",
         "repositoryFilters": [{"filter": "mlops/*", "filterType": "WILDCARD"}]}
    ]  # fmt: skip
    for wanted in config.repositories:
        (actual,) = ecr.describe_repositories(repositoryNames=[wanted.name])["repositories"]
        assert actual["imageTagMutability"] == "IMMUTABLE"
        assert actual["imageScanningConfiguration"] == {"scanOnPush": True}
        assert actual["encryptionConfiguration"]["encryptionType"] == "AES256"
        lifecycle = ecr.get_lifecycle_policy(repositoryName=wanted.name)["lifecyclePolicyText"]
        assert json.loads(lifecycle) == wanted.lifecycle_policy.document()
        policy = ecr.get_repository_policy(repositoryName=wanted.name)["policyText"]
        assert json.loads(policy) == wanted.repository_policy_for(ACCOUNT)
        assert "${AWS_ACCOUNT_ID}" not in policy
        tags = ecr.list_tags_for_resource(resourceArn=actual["repositoryArn"])["tags"]
        assert {t["Key"]: t["Value"] for t in tags} == wanted.tags


def test_second_run_changes_nothing(ecr: ECRClient, config: RegistryConfig) -> None:
    bootstrap(ecr, config, ACCOUNT)
    before = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}

    reports = bootstrap(ecr, config, ACCOUNT)

    assert [(r.name, r.created, r.changes, r.problems) for r in reports] == [
        (REGISTRY, False, (), ()),
        ("mlops/retail-api", False, (), ()),
        ("mlops/retail-operator", False, (), ()),
        ("mlops/train-model", False, (), ()),
    ]
    after = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    assert after == before


def test_drift_is_corrected_and_reported(ecr: ECRClient, config: RegistryConfig) -> None:
    bootstrap(ecr, config, ACCOUNT)
    ecr.put_image_tag_mutability(repositoryName="mlops/retail-api", imageTagMutability="MUTABLE")
    ecr.put_image_scanning_configuration(
        repositoryName="mlops/train-model", imageScanningConfiguration={"scanOnPush": False}
    )
    ecr.put_lifecycle_policy(
        repositoryName="mlops/train-model",
        lifecyclePolicyText=json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": 500,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
    )
    ecr.delete_repository_policy(repositoryName="mlops/retail-api")

    reports = {r.name: r for r in bootstrap(ecr, config, ACCOUNT)}

    assert reports["mlops/retail-api"].changes == (
        "tag mutability MUTABLE → IMMUTABLE",
        "repository policy set",
    )
    assert reports["mlops/train-model"].changes == (
        "scan on push False → True",
        "lifecycle policy replaced (it had drifted)",
    )
    api = ecr.describe_repositories(repositoryNames=["mlops/retail-api"])["repositories"][0]
    assert api["imageTagMutability"] == "IMMUTABLE"
    train = ecr.describe_repositories(repositoryNames=["mlops/train-model"])["repositories"][0]
    assert train["imageScanningConfiguration"] == {"scanOnPush": True}
    assert all(not r.changed for r in bootstrap(ecr, config, ACCOUNT))


def test_encryption_drift_is_reported_not_hidden(ecr: ECRClient, config: RegistryConfig) -> None:
    ecr.create_repository(
        repositoryName="mlops/retail-api",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS"},
    )

    reports = {r.name: r for r in bootstrap(ecr, config, ACCOUNT)}

    (problem,) = reports["mlops/retail-api"].problems
    assert "encryption is KMS, wanted AES256" in problem
    assert reports["mlops/train-model"].problems == ()


def test_a_registry_back_on_basic_scanning_is_put_back_on_continuous(
    ecr: ECRClient, config: RegistryConfig
) -> None:
    """Basic scanning never publishes a new finding for an image already pushed: the running
    images' re-checks would find nothing. Drift to it is corrected."""
    bootstrap(ecr, config, ACCOUNT)
    ecr.put_registry_scanning_configuration(
        scanType="BASIC",
        rules=[{"scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}],
    )  # fmt: skip
    (registry, *_) = bootstrap(ecr, config, ACCOUNT)
    assert registry.changes == ("scanning BASIC → ENHANCED (CONTINUOUS_SCAN)",)
    scanning = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
    assert scanning["scanType"] == "ENHANCED"
