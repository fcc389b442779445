"""The RetailModel spec as typed, immutable values, parsed from a custom resource's body.

The CRD's OpenAPI schema already rejects malformed specs at the API server; this parser only
adds typing and a few derived values (the ECR registry/region/name, the S3 bucket/key), and
turns ``spec.model`` into the model-source document the pods read (``retail_contract``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from retail_contract.source import ModelSource, S3Uri

_ECR_URI = re.compile(
    r"^(?P<registry>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<name>.+)$"
)


class Severity(StrEnum):
    """ECR finding severities, most severe first; NONE as a policy means "never block"."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFORMATIONAL = "INFORMATIONAL"
    UNDEFINED = "UNDEFINED"
    NONE = "NONE"


class Part(BaseModel):
    """A part of a custom resource's spec: camelCase in the API, immutable here."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, alias_generator=to_camel, extra="ignore"
    )


class ImageRef(Part):
    repository: str
    tag: str
    # PEM public keys the image's cosign signature must be made with: the spec's own (a tenant
    # may narrow a RetailModelPolicy's list, never widen it; ``policy.trusted_image_keys``).
    trusted_keys: tuple[str, ...] = ()

    def _parts(self) -> re.Match[str]:
        match = _ECR_URI.match(self.repository)
        if match is None:
            raise ValueError(f"not an ECR repository URI: {self.repository}")
        return match

    @property
    def registry_id(self) -> str:
        return self._parts()["registry"]

    @property
    def region(self) -> str:
        return self._parts()["region"]

    @property
    def repository_name(self) -> str:
        return self._parts()["name"]

    def pinned(self, digest: str) -> str:
        """The image reference pinned to a digest: what a Deployment should run."""
        return f"{self.repository}@{digest}"


class ModelSpec(Part):
    """``spec.model``: the S3 object serving pods load, optionally pinned (empty = unpinned)."""

    s3_uri: str
    version_id: str = ""
    sha256: str = ""
    # Not in the CRD (the API server prunes it from a spec): the account a RetailModelPolicy
    # says must own the bucket, which the operator adds to what the pods are told.
    bucket_owner: str = ""
    # PEM public keys the model's signature must be made with: the spec's own (a tenant may
    # narrow a RetailModelPolicy's list, never widen it), replaced by the keys that apply
    # (``policy.trusted_model_keys``) in what the pods are told.
    trusted_keys: tuple[str, ...] = ()

    @property
    def location(self) -> S3Uri:
        return S3Uri.parse(self.s3_uri)

    def source(self) -> ModelSource:
        """The model-source document the predictor pods are configured with."""
        return ModelSource(
            self.s3_uri,
            self.version_id or None,
            self.sha256 or None,
            self.bucket_owner or None,
            self.trusted_keys,
        )

    @classmethod
    def from_source(cls, source: ModelSource) -> ModelSpec:
        return cls(
            s3_uri=source.uri,
            version_id=source.version_id or "",
            sha256=source.sha256 or "",
            bucket_owner=source.bucket_owner or "",
            trusted_keys=source.trusted_keys,
        )


class ScanException(Part):
    """``spec.scanPolicy.exceptions[]``: one finding allowed until ``expires``, for a reason."""

    id: str
    reason: str
    expires: AwareDatetime

    def active(self, now: datetime) -> bool:
        """Whether the exception still applies: it stops the moment it expires."""
        return now < self.expires


class ScanPolicy(Part):
    block_severity: Severity = Severity.HIGH
    # The lesser form: findings allowed for good, with no reason recorded and no end.
    ignore_cves: tuple[str, ...] = Field(default=(), alias="ignoreCVEs")
    exceptions: tuple[ScanException, ...] = ()
    require_scan: bool = True


class Toleration(Part):
    """A core/v1 Toleration for the predictor pods."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_defaults=True)


class EnvSource(Part):
    """``spec.envFrom[]``: a Secret or ConfigMap whose keys become the predictor's environment
    (say a proxy, or a local AWS stand-in's endpoint and credentials; on EKS, IRSA needs none)."""

    secret_ref: dict[str, str] | None = None
    config_map_ref: dict[str, str] | None = None

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)

    def reference(self) -> str:
        """``ConfigMap/NAME`` or ``Secret/NAME``, as a RetailModelPolicy names sources."""
        if self.secret_ref is not None:
            return f"Secret/{self.secret_ref.get('name', '')}"
        return f"ConfigMap/{(self.config_map_ref or {}).get('name', '')}"


class RolloutStrategy(StrEnum):
    """How a new model object reaches the pods."""

    IMMEDIATE = "Immediate"  # every pod hot-reloads it within one poll
    CANARY = "Canary"  # a few pods serve it first; it is promoted or rolled back by analysis


# The fewest requests per group with which the judge's tests can reject anything at their
# alpha: below it, even a candidate that predicts only classes the stable model never does is
# promoted. The CRD refuses a smaller minRequests with the same number.
MIN_REQUESTS_FLOOR = 50


# The fewest rows a drift window may be judged on (the CRD says the same): a chi-squared test
# over fifty bins wants a few rows in each.
MIN_DRIFT_ROWS = 100


class Analysis(Part):
    """``spec.rollout.canary.analysis``: how long a candidate is watched, and what it must meet.

    The CRD's CEL rules refuse an analysis that cannot fail; the same bounds hold here."""

    duration_seconds: int = 120
    # No verdict by then rolls the candidate back (Inconclusive); None: 10 × duration_seconds.
    max_duration_seconds: int | None = None
    min_requests: int = Field(200, ge=MIN_REQUESTS_FLOOR)
    # How far the candidate's failure rate may exceed the stable pods' (0.01: one point more).
    max_error_rate: float = Field(0.01, ge=0, lt=1)
    max_latency_ratio: float = 1.5
    # Below the power target's five points, so a five-point shift can roll back.
    max_prediction_shift: float = Field(0.03, ge=0, lt=1)

    @model_validator(mode="after")
    def _a_deadline_after_the_duration(self) -> Analysis:
        if self.max_duration_seconds is not None and (
            self.max_duration_seconds < self.duration_seconds
        ):
            raise ValueError("maxDurationSeconds must be at least durationSeconds")
        return self

    @property
    def deadline_seconds(self) -> int:
        return self.max_duration_seconds or 10 * self.duration_seconds


class CanaryPolicy(Part):
    replicas: int = 1
    analysis: Analysis = Analysis()


class RolloutPolicy(Part):
    """``spec.rollout``. Immediate is today's behaviour and the default."""

    strategy: RolloutStrategy = RolloutStrategy.IMMEDIATE
    canary: CanaryPolicy = CanaryPolicy()

    @property
    def canary_enabled(self) -> bool:
        return self.strategy is RolloutStrategy.CANARY


class Autoscaling(Part):
    """``spec.autoscaling``: a HorizontalPodAutoscaler (autoscaling/v2) on the stable pods, on
    their CPU use against their CPU request; ``replicas`` then only sets the start."""

    min_replicas: int = 1
    max_replicas: int
    target_cpu_utilization_percentage: int = Field(70, alias="targetCPUUtilizationPercentage")
    scale_down_stabilization_seconds: int = 300


class Disruption(Part):
    """``spec.disruption``: the PodDisruptionBudget of each group with two pods or more (a
    drain or an eviction may take at most ``maxUnavailable`` of them at once)."""

    enabled: bool = True
    max_unavailable: int | str = 1


class Spread(StrEnum):
    """How replicas spread over a topology: soft (preferred), hard (required) or not at all."""

    SOFT = "Soft"
    HARD = "Hard"
    OFF = "Off"


class TopologySpread(Part):
    """``spec.topologySpread``: replicas spread across zones and nodes, softly by default."""

    zone: Spread = Spread.SOFT
    node: Spread = Spread.SOFT


class DriftPolicy(Part):
    """``spec.monitoring.drift``: compare what the stable pods see and predict with the model's
    hold-out, window by window (retail_operator.drift). Present means on; it only reports."""

    enabled: bool = True
    window_seconds: int = Field(3600, ge=30, le=604_800)
    # Rows below which a window says InsufficientData: PSI of a few rows is mostly noise.
    min_rows: int = Field(1000, ge=MIN_DRIFT_ROWS)
    # 0.25 is the usual "significant shift" of the population stability index.
    max_prediction_psi: float = Field(0.25, gt=0)
    max_feature_psi: float = Field(0.25, gt=0)


class Monitoring(Part):
    drift: DriftPolicy | None = None

    @property
    def drift_enabled(self) -> bool:
        return self.drift is not None and self.drift.enabled


class RetailModelSpec(Part):
    image: ImageRef
    model: ModelSpec
    replicas: int = 1
    reload_interval_seconds: int = 30
    scan_policy: ScanPolicy = ScanPolicy()
    resources: dict[str, dict[str, str | int]] = Field(default_factory=dict)
    service_account_name: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    rollout: RolloutPolicy = RolloutPolicy()
    env_from: tuple[EnvSource, ...] = ()
    autoscaling: Autoscaling | None = None
    disruption: Disruption = Disruption()
    topology_spread: TopologySpread = TopologySpread()
    monitoring: Monitoring = Monitoring()

    @property
    def minimum_replicas(self) -> int:
        """The fewest stable pods the spec asks for: what Ready waits for."""
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas

    @classmethod
    def from_body(cls, spec: Mapping[str, Any]) -> RetailModelSpec:
        return cls.model_validate(dict(spec))
