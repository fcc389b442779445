"""Make ECR repositories match their description, idempotently, correcting drift.

For each repository in a :class:`~retail_tools.ecr.config.RegistryConfig`, ``bootstrap``
creates it if missing, then compares every managed setting with what ECR reports and writes
only what differs. It returns, per repository, the list of changes made, so a second run on an
unchanged registry reports nothing. Encryption cannot be changed on an existing repository: a
mismatch there is reported as a problem to fix by hand, never silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retail_tools.ecr.config import RegistryConfig, RegistryScanning, RepositoryConfig

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import RepositoryTypeDef


@dataclass(frozen=True)
class RepositoryReport:
    """What bootstrap did to one repository."""

    name: str
    created: bool
    changes: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.created or bool(self.changes)


Progress = Callable[[str], None]


REGISTRY = "(registry)"  # the report line for the registry-wide scanning configuration


def bootstrap(
    client: ECRClient,
    config: RegistryConfig,
    account_id: str,
    progress: Progress = lambda _line: None,
) -> list[RepositoryReport]:
    """Apply ``config`` to the registry behind ``client``; report per repository (and, when
    the file sets it, for the registry's scanning configuration first)."""
    reports = []
    if config.registry_scanning is not None:
        progress("checking the registry's scanning configuration")
        reports.append(_apply_registry_scanning(client, config.registry_scanning))
    for wanted in config.repositories:
        progress(f"checking {wanted.name}")
        reports.append(_apply(client, wanted, account_id))
    return reports


def _apply_registry_scanning(client: ECRClient, wanted: RegistryScanning) -> RepositoryReport:
    current = client.get_registry_scanning_configuration()["scanningConfiguration"]
    document = wanted.document()
    if current.get("scanType") == document["scanType"] and _normalised(
        current.get("rules", [])
    ) == _normalised(document["rules"]):
        return RepositoryReport(REGISTRY, False, (), ())
    client.put_registry_scanning_configuration(
        scanType=document["scanType"], rules=document["rules"]
    )
    frequencies = ", ".join(sorted({r["scanFrequency"] for r in document["rules"]}))
    change = f"scanning {current.get('scanType', 'BASIC')} → {document['scanType']} ({frequencies})"
    return RepositoryReport(REGISTRY, False, (change,), ())


def _apply(client: ECRClient, wanted: RepositoryConfig, account_id: str) -> RepositoryReport:
    current = _describe(client, wanted.name)
    created = current is None
    if current is None:
        current = client.create_repository(
            repositoryName=wanted.name,
            imageTagMutability=wanted.image_tag_mutability,
            imageScanningConfiguration={"scanOnPush": wanted.scan_on_push},
            encryptionConfiguration={"encryptionType": wanted.encryption},
            tags=[{"Key": key, "Value": value} for key, value in sorted(wanted.tags.items())],
        )["repository"]
    changes: list[str] = []
    problems: list[str] = []

    if current.get("imageTagMutability") != wanted.image_tag_mutability:
        client.put_image_tag_mutability(
            repositoryName=wanted.name, imageTagMutability=wanted.image_tag_mutability
        )
        changes.append(
            f"tag mutability {current.get('imageTagMutability')} → {wanted.image_tag_mutability}"
        )

    scan_on_push = current.get("imageScanningConfiguration", {}).get("scanOnPush", False)
    if scan_on_push != wanted.scan_on_push:
        client.put_image_scanning_configuration(
            repositoryName=wanted.name,
            imageScanningConfiguration={"scanOnPush": wanted.scan_on_push},
        )
        changes.append(f"scan on push {scan_on_push} → {wanted.scan_on_push}")

    encryption = current.get("encryptionConfiguration", {}).get("encryptionType", "AES256")
    if encryption != wanted.encryption:
        problems.append(
            f"encryption is {encryption}, wanted {wanted.encryption}: ECR cannot change it in "
            "place; recreate the repository"
        )

    changes.extend(_apply_tags(client, current["repositoryArn"], wanted.tags))
    changes.extend(_apply_lifecycle_policy(client, wanted))
    changes.extend(_apply_repository_policy(client, wanted, account_id))
    return RepositoryReport(wanted.name, created, tuple(changes), tuple(problems))


def _describe(client: ECRClient, name: str) -> RepositoryTypeDef | None:
    try:
        return client.describe_repositories(repositoryNames=[name])["repositories"][0]
    except client.exceptions.RepositoryNotFoundException:
        return None


def _apply_tags(client: ECRClient, arn: str, wanted: dict[str, str]) -> list[str]:
    """Set the listed tags; tags not in the file are left alone (others may own them)."""
    listed = client.list_tags_for_resource(resourceArn=arn)["tags"]
    current = {tag["Key"]: tag["Value"] for tag in listed}
    differing = {key: value for key, value in wanted.items() if current.get(key) != value}
    if not differing:
        return []
    client.tag_resource(
        resourceArn=arn, tags=[{"Key": key, "Value": value} for key, value in differing.items()]
    )
    return [f"tags set: {', '.join(sorted(differing))}"]


def _apply_lifecycle_policy(client: ECRClient, wanted: RepositoryConfig) -> list[str]:
    document = wanted.lifecycle_policy.document()
    try:
        text = client.get_lifecycle_policy(repositoryName=wanted.name)["lifecyclePolicyText"]
        current: Any = json.loads(text)
    except client.exceptions.LifecyclePolicyNotFoundException:
        current = None
    if current == document:
        return []
    client.put_lifecycle_policy(
        repositoryName=wanted.name, lifecyclePolicyText=json.dumps(document, sort_keys=True)
    )
    return ["lifecycle policy " + ("set" if current is None else "replaced (it had drifted)")]


def _apply_repository_policy(
    client: ECRClient, wanted: RepositoryConfig, account_id: str
) -> list[str]:
    document = wanted.repository_policy_for(account_id)
    try:
        text = client.get_repository_policy(repositoryName=wanted.name)["policyText"]
        current: Any = json.loads(text)
    except client.exceptions.RepositoryPolicyNotFoundException:
        current = None
    if current is not None and _normalised(current) == _normalised(document):
        return []
    client.set_repository_policy(
        repositoryName=wanted.name, policyText=json.dumps(document, sort_keys=True)
    )
    return ["repository policy " + ("set" if current is None else "replaced (it had drifted)")]


def _normalised(policy: Any) -> Any:
    """IAM treats ``"x"`` and ``["x"]`` alike and ignores list order; compare that way."""
    if isinstance(policy, dict):
        return {key: _normalised(value) for key, value in policy.items()}
    if isinstance(policy, list):
        items = [_normalised(item) for item in policy]
        if len(items) == 1 and not isinstance(items[0], dict):
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return policy
