"""The model of deploy/ecr/repositories.yaml: what each ECR repository must look like.

The file lists repositories with their tag mutability, scan-on-push, encryption, resource tags,
lifecycle policy and repository (pull) policy. Policies are written as the JSON documents ECR
takes, so they can be read next to the AWS documentation; the lifecycle rules are also checked
here against ECR's rules (unique priorities, prefixes only on tagged rules, ``any`` last), so a
mistake fails before anything is sent. ``${AWS_ACCOUNT_ID}`` in a repository policy stands for
the account being bootstrapped, so one file serves every account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ACCOUNT_PLACEHOLDER = "${AWS_ACCOUNT_ID}"


class ConfigError(ValueError):
    """The repositories file is missing, unreadable or not a valid description."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LifecycleSelection(_Strict):
    tag_status: Literal["tagged", "untagged", "any"] = Field(alias="tagStatus")
    tag_prefix_list: tuple[str, ...] | None = Field(default=None, alias="tagPrefixList")
    tag_pattern_list: tuple[str, ...] | None = Field(default=None, alias="tagPatternList")
    count_type: Literal["imageCountMoreThan", "sinceImagePushed"] = Field(alias="countType")
    count_unit: Literal["days"] | None = Field(default=None, alias="countUnit")
    count_number: int = Field(alias="countNumber", ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> LifecycleSelection:
        filtered = self.tag_prefix_list is not None or self.tag_pattern_list is not None
        if self.tag_status == "tagged" and not filtered:
            raise ValueError("a tagged rule needs tagPrefixList or tagPatternList")
        if self.tag_status != "tagged" and filtered:
            raise ValueError("only tagged rules take tagPrefixList or tagPatternList")
        if (self.count_type == "sinceImagePushed") != (self.count_unit is not None):
            raise ValueError("countUnit goes with countType sinceImagePushed, and only with it")
        return self


class LifecycleAction(_Strict):
    type: Literal["expire"]


class LifecycleRule(_Strict):
    rule_priority: int = Field(alias="rulePriority", ge=1)
    description: str | None = None
    selection: LifecycleSelection
    action: LifecycleAction


class LifecyclePolicy(_Strict):
    rules: tuple[LifecycleRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> LifecyclePolicy:
        priorities = [rule.rule_priority for rule in self.rules]
        if len(set(priorities)) != len(priorities):
            raise ValueError("rulePriority values must be unique")
        highest = max(priorities)
        for rule in self.rules:
            if rule.selection.tag_status == "any" and rule.rule_priority != highest:
                raise ValueError("a rule with tagStatus any must have the highest rulePriority")
        return self

    def document(self) -> dict[str, Any]:
        """The policy as ECR's JSON document."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RepositoryConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
    image_tag_mutability: Literal["IMMUTABLE", "MUTABLE"] = Field(alias="imageTagMutability")
    scan_on_push: bool = Field(alias="scanOnPush")
    encryption: Literal["AES256", "KMS"] = "AES256"
    tags: dict[str, str] = Field(default_factory=dict)
    lifecycle_policy: LifecyclePolicy = Field(alias="lifecyclePolicy")
    repository_policy: dict[str, Any] = Field(alias="repositoryPolicy")

    @model_validator(mode="after")
    def _policy_shape(self) -> RepositoryConfig:
        statements = self.repository_policy.get("Statement")
        if not isinstance(statements, list) or not statements:
            raise ValueError("repositoryPolicy needs a non-empty Statement list")
        return self

    def repository_policy_for(self, account_id: str) -> dict[str, Any]:
        """The repository policy with ``${AWS_ACCOUNT_ID}`` replaced by ``account_id``."""
        text = json.dumps(self.repository_policy).replace(ACCOUNT_PLACEHOLDER, account_id)
        document: dict[str, Any] = json.loads(text)
        return document


class RepositoryFilter(_Strict):
    filter: str = Field(min_length=1)
    filter_type: Literal["WILDCARD"] = Field("WILDCARD", alias="filterType")


class ScanningRule(_Strict):
    scan_frequency: Literal["SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"] = Field(
        alias="scanFrequency"
    )
    repository_filters: tuple[RepositoryFilter, ...] = Field(
        alias="repositoryFilters", min_length=1
    )


class RegistryScanning(_Strict):
    """The registry's scanning configuration (one per account and region): enhanced scanning
    with continuous rescans publishes new findings against images already pushed, which is
    what lets the operator notice CVEs found after a rollout. Basic scanning scans once, on
    push, and never again."""

    scan_type: Literal["BASIC", "ENHANCED"] = Field(alias="scanType")
    rules: tuple[ScanningRule, ...] = Field(min_length=1)

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class RegistryConfig(_Strict):
    repositories: tuple[RepositoryConfig, ...] = Field(min_length=1)
    registry_scanning: RegistryScanning | None = Field(None, alias="registryScanning")

    @model_validator(mode="after")
    def _unique(self) -> RegistryConfig:
        names = [repository.name for repository in self.repositories]
        if len(set(names)) != len(names):
            raise ValueError("repository names must be unique")
        return self


def load_config(path: Path) -> RegistryConfig:
    """Read and validate a repositories file; any problem is one :class:`ConfigError`."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    try:
        return RegistryConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise ConfigError(
            f"{path}: {where}: {first['msg']} ({error.error_count()} problem(s))"
        ) from error
