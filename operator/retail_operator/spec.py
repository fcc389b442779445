"""The RetailModel spec as typed, immutable values, parsed from a custom resource's body.

The CRD's OpenAPI schema already rejects malformed specs at the API server; this parser only
adds typing and a few derived values (the ECR registry/region/name, the S3 bucket/key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_ECR_URI = re.compile(
    r"^(?P<registry>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<name>.+)$"
)
_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")


class Severity(StrEnum):
    """ECR finding severities, most severe first; NONE as a policy means "never block"."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFORMATIONAL = "INFORMATIONAL"
    UNDEFINED = "UNDEFINED"
    NONE = "NONE"


class _Spec(BaseModel):
    model_config = ConfigDict(
        frozen=True, populate_by_name=True, alias_generator=to_camel, extra="ignore"
    )


class ImageRef(_Spec):
    repository: str
    tag: str

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


class ModelSource(_Spec):
    """Where serving pods load the model from; also what they are configured with."""

    s3_uri: str
    version_id: str = ""
    sha256: str = ""

    def _parts(self) -> re.Match[str]:
        match = _S3_URI.match(self.s3_uri)
        if match is None:
            raise ValueError(f"not an S3 URI: {self.s3_uri}")
        return match

    @property
    def bucket(self) -> str:
        return self._parts()["bucket"]

    @property
    def key(self) -> str:
        return self._parts()["key"]


class ScanPolicy(_Spec):
    block_severity: Severity = Severity.HIGH
    ignore_cves: tuple[str, ...] = Field(default=(), alias="ignoreCVEs")
    require_scan: bool = True


class RetailModelSpec(_Spec):
    image: ImageRef
    model: ModelSource
    replicas: int = 1
    reload_interval_seconds: int = 30
    scan_policy: ScanPolicy = ScanPolicy()
    resources: dict[str, dict[str, str | int]] = Field(default_factory=dict)
    service_account_name: str = ""

    @classmethod
    def from_body(cls, spec: Mapping[str, Any]) -> RetailModelSpec:
        return cls.model_validate(dict(spec))
