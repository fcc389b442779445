"""The repositories file: the shipped one says what delivery promises; bad ones fail clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_tools.ecr.config import ConfigError, RegistryConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED = REPO_ROOT / "deploy" / "ecr" / "repositories.yaml"


def shipped() -> RegistryConfig:
    return load_config(SHIPPED)


def rules_by_prefix(name: str) -> dict[str, dict[str, Any]]:
    repository = next(r for r in shipped().repositories if r.name == name)
    rules = repository.lifecycle_policy.document()["rules"]
    return {
        (rule["selection"].get("tagPrefixList") or ["<untagged>"])[0]: rule["selection"]
        for rule in rules
    }


def test_shipped_repositories_are_immutable_scanned_and_encrypted() -> None:
    config = shipped()
    assert {r.name for r in config.repositories} == {
        "mlops/retail-api",
        "mlops/retail-operator",
        "mlops/train-model",
    }
    for repository in config.repositories:
        assert repository.image_tag_mutability == "IMMUTABLE"
        assert repository.scan_on_push
        assert repository.encryption == "AES256"


@pytest.mark.parametrize(
    ("name", "keep", "untagged_days"), [("mlops/retail-api", 10, 7), ("mlops/train-model", 5, 3)]
)
def test_lifecycle_rules(name: str, keep: int, untagged_days: int) -> None:
    rules = rules_by_prefix(name)
    assert rules["<untagged>"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": untagged_days,
    }
    for prefix in ("v", "dev", "feature"):
        assert rules[prefix]["countType"] == "imageCountMoreThan"
        assert rules[prefix]["countNumber"] == keep


def test_pull_policies_name_the_node_role_and_sagemaker() -> None:
    config = {r.name: r for r in shipped().repositories}
    api = config["mlops/retail-api"].repository_policy_for("210987654321")
    (statement,) = api["Statement"]
    assert statement["Principal"]["AWS"] == "arn:aws:iam::210987654321:role/retail-eks-node-role"
    assert set(statement["Action"]) == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }
    train = config["mlops/train-model"].repository_policy_for("210987654321")
    (statement,) = train["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "210987654321"


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "repositories.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def valid_repository() -> dict[str, Any]:
    raw = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    repository: dict[str, Any] = raw["repositories"][0]
    return repository


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(imageTagMutability="SOMETIMES"), "imageTagMutability"),
        (lambda r: r.update(name="Mlops/Retail API"), "name"),
        (lambda r: r["lifecyclePolicy"]["rules"][1]["selection"].pop("tagPrefixList"), "tagged"),
        (lambda r: r["lifecyclePolicy"]["rules"][1].update(rulePriority=1), "unique"),
        (lambda r: r.update(repositoryPolicy={"Version": "2012-10-17"}), "Statement"),
        (lambda r: r.update(surprise=True), "surprise"),
    ],
)
def test_invalid_files_fail_with_one_clear_error(tmp_path: Path, mutate: Any, message: str) -> None:
    repository = valid_repository()
    mutate(repository)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {"repositories": [repository]}))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
