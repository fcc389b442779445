"""The platform's policy: what a RetailModel must meet, whatever its author wrote. Pure.

A ``RetailModelPolicy`` is cluster-scoped. The one named ``default`` applies to every
namespace; any other applies to the namespaces its ``namespaceSelector`` matches; every policy
that applies must be met (``applying``). ``violations`` compares a RetailModel's spec with
them: a tenant may be stricter than a policy, never looser. The reconcile refuses a spec with
any violation (``Ready=False``, ``PolicyViolation``, naming the policy and the rule) and keeps
what runs running; ``Requirements`` is what the policies ask of the children themselves (the
bucket's owner and the largest model, told to the pods).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from retail_operator.spec import ImageRef, ModelSpec, Part, RetailModelSpec, Severity
from retail_provenance.keys import TrustedKey, load_keys

DEFAULT = "default"
RULE_REASON = "PolicyViolation"

# Strictness of a blockSeverity: blocking at LOW blocks the most, NONE blocks nothing.
_STRICTNESS = {
    Severity.LOW: 4,
    Severity.MEDIUM: 3,
    Severity.HIGH: 2,
    Severity.CRITICAL: 1,
    Severity.NONE: 0,
}


class SelectorRequirement(Part):
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


class NamespaceSelector(Part):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        parts += [
            f"{e.key} {e.operator} {','.join(e.values)}".strip() for e in self.match_expressions
        ]
        return "namespaces with " + (", ".join(parts) or "any labels")


class ImageRules(Part):
    allowed_accounts: tuple[str, ...] = ()
    allowed_repositories: tuple[str, ...] = ()
    trusted_keys: tuple[str, ...] = ()  # PEM: images must be signed (cosign) by one of them


class ScanningRules(Part):
    max_block_severity: Severity | None = None
    allow_unscanned: bool = False
    allow_ignore_cves: bool = Field(False, alias="allowIgnoreCVEs")
    max_exception_days: int | None = None


class PodRules(Part):
    allowed_service_accounts: tuple[str, ...] | None = None
    allowed_env_from: tuple[str, ...] | None = None


class ModelRules(Part):
    max_bytes: int | None = None
    bucket_owner: str = ""
    allowed_buckets: tuple[str, ...] = ()
    trusted_keys: tuple[str, ...] = ()  # PEM: models must be signed by one of them


class PolicySpec(Part):
    namespace_selector: NamespaceSelector | None = None
    images: ImageRules = ImageRules()
    scanning: ScanningRules = ScanningRules()
    pods: PodRules = PodRules()
    models: ModelRules = ModelRules()


@dataclass(frozen=True)
class Policy:
    name: str
    spec: PolicySpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Policy:
        """``ValueError`` (pydantic's) when the spec is not a policy's."""
        return cls(str(body["metadata"]["name"]), PolicySpec.model_validate(body.get("spec") or {}))

    def applies_to(self, namespace_labels: Mapping[str, str]) -> bool:
        if self.name == DEFAULT:
            return True
        selector = self.spec.namespace_selector
        return selector is not None and selector.matches(namespace_labels)

    def describe_scope(self) -> str:
        if self.name == DEFAULT:
            return "all"
        selector = self.spec.namespace_selector
        return selector.describe() if selector else "none"


@dataclass(frozen=True)
class Violation:
    policy: str
    rule: str  # the policy's field, e.g. scanning.maxBlockSeverity
    message: str

    def __str__(self) -> str:
        return f"RetailModelPolicy {self.policy}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Requirements:
    """What the policies that apply ask of the children themselves."""

    bucket_owner: str = ""  # S3's ExpectedBucketOwner, for the operator's calls and the pods'
    max_model_bytes: int | None = None  # the largest model any of them allows


def applying(policies: Iterable[Policy], namespace_labels: Mapping[str, str]) -> list[Policy]:
    return sorted((p for p in policies if p.applies_to(namespace_labels)), key=lambda p: p.name)


def requirements(policies: Iterable[Policy]) -> Requirements:
    owners = {p.spec.models.bucket_owner for p in policies if p.spec.models.bucket_owner}
    sizes = [p.spec.models.max_bytes for p in policies if p.spec.models.max_bytes]
    # Two policies naming two owners cannot both be met; violations() says so.
    return Requirements(min(owners) if owners else "", min(sizes) if sizes else None)


def _image_rules(repository_uri: str, rules: ImageRules, name: str) -> Iterable[Violation]:
    image = ImageRef(repository=repository_uri, tag="-")
    try:
        account, repository = image.registry_id, image.repository_name
    except ValueError:
        account, repository = "", repository_uri
    if rules.allowed_accounts and account not in rules.allowed_accounts:
        yield Violation(
            name,
            "images.allowedAccounts",
            f"the image's account {account or '(none)'} is not one of "
            f"{', '.join(rules.allowed_accounts)}",
        )
    if rules.allowed_repositories and not any(
        fnmatch.fnmatchcase(repository, pattern) for pattern in rules.allowed_repositories
    ):
        yield Violation(
            name,
            "images.allowedRepositories",
            f"the repository {repository} matches none of {', '.join(rules.allowed_repositories)}",
        )


def image_refused(image: str, policies: Iterable[Policy]) -> Violation | None:
    """The first rule an image that runs (``repository@digest``) breaks, if any: such an image
    keeps running but is never applied again."""
    repository = image.partition("@")[0]
    for policy in policies:
        for violation in _image_rules(repository, policy.spec.images, policy.name):
            return violation
    return None


def violations(spec: RetailModelSpec, policies: Iterable[Policy], now: datetime) -> list[Violation]:
    """Every rule of every applying policy the spec breaks (none: it may roll out)."""
    found: list[Violation] = []
    for policy in policies:
        found.extend(_check(spec, policy, now))
    owners = {p.spec.models.bucket_owner for p in policies if p.spec.models.bucket_owner}
    if len(owners) > 1:
        names = ", ".join(p.name for p in policies if p.spec.models.bucket_owner)
        found.append(
            Violation(names, "models.bucketOwner", f"the policies name {len(owners)} owners")
        )
    return found


def _check(spec: RetailModelSpec, policy: Policy, now: datetime) -> Iterable[Violation]:
    rules, name = policy.spec, policy.name
    yield from _image_rules(spec.image.repository, rules.images, name)
    scanning, scan_policy = rules.scanning, spec.scan_policy
    if scanning.max_block_severity is not None and (
        _STRICTNESS[scan_policy.block_severity] < _STRICTNESS[scanning.max_block_severity]
    ):
        yield Violation(
            name,
            "scanning.maxBlockSeverity",
            f"scanPolicy.blockSeverity {scan_policy.block_severity.value} blocks less than "
            f"{scanning.max_block_severity.value}",
        )
    if not scan_policy.require_scan and not scanning.allow_unscanned:
        yield Violation(
            name, "scanning.allowUnscanned", "scanPolicy.requireScan false is not allowed"
        )
    if scan_policy.ignore_cves and not scanning.allow_ignore_cves:
        yield Violation(
            name,
            "scanning.allowIgnoreCVEs",
            f"scanPolicy.ignoreCVEs ({', '.join(scan_policy.ignore_cves)}) is not allowed: "
            "use exceptions, which carry a reason and an end",
        )
    if scanning.max_exception_days is not None:
        latest = now + timedelta(days=scanning.max_exception_days)
        too_long = [e.id for e in scan_policy.exceptions if e.expires > latest]
        if too_long:
            yield Violation(
                name,
                "scanning.maxExceptionDays",
                f"the exception(s) for {', '.join(too_long)} end more than "
                f"{scanning.max_exception_days} days from now",
            )
    pods = rules.pods
    account = spec.service_account_name
    if (
        pods.allowed_service_accounts is not None
        and account
        and (account not in pods.allowed_service_accounts)
    ):
        yield Violation(
            name,
            "pods.allowedServiceAccounts",
            f"serviceAccountName {account} is not one of "
            f"{', '.join(pods.allowed_service_accounts) or '(only the default)'}",
        )
    if pods.allowed_env_from is not None:
        sources = [source.reference() for source in spec.env_from]
        refused = [s for s in sources if s not in pods.allowed_env_from]
        if refused:
            yield Violation(
                name,
                "pods.allowedEnvFrom",
                f"envFrom {', '.join(refused)} is not allowed "
                f"(allowed: {', '.join(pods.allowed_env_from) or 'none'})",
            )
    yield from _narrowed(name, "images.trustedKeys", rules.images.trusted_keys, spec.image)
    models = rules.models
    yield from _narrowed(name, "models.trustedKeys", models.trusted_keys, spec.model)
    bucket = spec.model.location.bucket
    if models.allowed_buckets and bucket not in models.allowed_buckets:
        yield Violation(
            name,
            "models.allowedBuckets",
            f"the bucket {bucket} is not one of {', '.join(models.allowed_buckets)}",
        )


def _narrowed(
    name: str, rule: str, trusted: tuple[str, ...], part: ImageRef | ModelSpec
) -> Iterable[Violation]:
    """A spec's own trusted keys (``spec.image`` or ``spec.model``) may only narrow a policy's."""
    if not (trusted and part.trusted_keys):
        return
    allowed = _fingerprints(trusted)
    extra = [f for f in _fingerprints(part.trusted_keys) if f not in allowed]
    if extra:
        field = "spec.image" if isinstance(part, ImageRef) else "spec.model"
        yield Violation(
            name,
            rule,
            f"{field}.trustedKeys names key(s) the policy does not trust: "
            + ", ".join(f"sha256:{f[:12]}" for f in sorted(extra)),
        )


def _fingerprints(pems: Iterable[str]) -> dict[str, TrustedKey]:
    """Keys by fingerprint; an unreadable key counts as none (``trusted_keys`` says so)."""
    try:
        return {key.fingerprint: key for key in load_keys(pems)}
    except ValueError:
        return {}


def trusted_model_keys(spec: RetailModelSpec, policies: Iterable[Policy]) -> tuple[str, ...]:
    """The PEM keys a model's signature must be made with (``trusted_keys``)."""
    listed = [p.spec.models.trusted_keys for p in policies]
    return trusted_keys(listed, spec.model.trusted_keys)


def trusted_image_keys(spec: RetailModelSpec, policies: Iterable[Policy]) -> tuple[str, ...]:
    """The PEM keys an image's cosign signature must be made with (``trusted_keys``)."""
    listed = [p.spec.images.trusted_keys for p in policies]
    return trusted_keys(listed, spec.image.trusted_keys)


def trusted_keys(
    policies_keys: Iterable[tuple[str, ...]], spec_keys: tuple[str, ...]
) -> tuple[str, ...]:
    """The PEM keys a signature must be made with (none: no signature is asked for).

    Every policy that lists keys must be met, so a key is trusted only when each of them lists
    it; the spec's own list narrows that further, never widens it (a key the policies do not
    list is a violation, ``violations``). ``ValueError`` when a key cannot be read: then
    nothing is trusted, and the check says why."""
    listed = [keys for keys in policies_keys if keys]
    if spec_keys:
        listed.append(spec_keys)
    if not listed:
        return ()
    sets = [{key.fingerprint: key for key in load_keys(pems)} for pems in listed]
    common = set(sets[0]).intersection(*sets[1:])
    return tuple(sets[0][fingerprint].pem.decode() for fingerprint in sorted(common))


def model_too_large(size: int, policies: Iterable[Policy]) -> Violation | None:
    """The first policy whose largest model is smaller than ``size`` bytes."""
    for policy in policies:
        limit = policy.spec.models.max_bytes
        if limit is not None and size > limit:
            return Violation(
                policy.name,
                "models.maxBytes",
                f"the model object is {size:,} bytes, more than {limit:,}",
            )
    return None
