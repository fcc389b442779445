"""The predictor's settings: one pydantic-settings object, read from the environment once.

The model's location comes either from ``MODEL_URI`` (with optional ``MODEL_VERSION_ID`` and
``MODEL_SHA256`` pins) or from ``MODEL_SOURCE_FILE``, the model-source document the operator mounts
from a ConfigMap (``retail_contract.source``), re-read on every poll, so pins change without a
restart. The operator sets the variables named in ``retail_contract.env``. Values only: the app
factory turns them into a registry and an engine.

AWS settings are deliberately absent: boto3 reads the standard variables itself
(``AWS_REGION``, ``AWS_ENDPOINT_URL``, credentials or IRSA's web identity), and this process
never handles credentials directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retail_contract import metrics
from retail_contract.source import S3Uri
from retail_serving.memory import DEFAULT_MAX_MODEL_BYTES

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, frozen=True, protected_namespaces=()
    )

    model_uri: str | None = Field(None, description="s3://bucket/key or a local path")
    model_version_id: str | None = Field(None, description="pin one S3 object version")
    model_sha256: Sha256 | None = Field(None, description="refuse a model with another digest")
    model_source_file: Path | None = Field(
        None, description='JSON {"uri", "versionId", "sha256"}, re-read on every poll'
    )
    model_name: str = Field("price-sensitivity", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    require_model_signature: bool = Field(
        False,
        description="refuse a model not signed by a trusted key (the keys: the model-source "
        "document's trustedKeys, or MODEL_TRUSTED_KEYS)",
    )
    model_trusted_keys: str | None = Field(
        None, description="PEM public keys models may be signed with, for MODEL_URI"
    )
    require_sha256_metadata: bool = Field(
        True, description="refuse S3 objects uploaded without sha256 metadata"
    )
    reload_interval_seconds: float = Field(30.0, gt=0, le=86_400)
    max_model_bytes: int = Field(
        DEFAULT_MAX_MODEL_BYTES, ge=1, description="refuse larger model objects, unread"
    )
    memory_limit_bytes: int | None = Field(
        None, ge=1, description="the container's memory, for the model limit (default: cgroup)"
    )

    metrics_port: int = Field(
        metrics.METRICS_PORT, ge=1, le=65535, description="/metrics and /model/info, not the API's"
    )
    max_batch_rows: int = Field(10_000, ge=1, description="/predict/batch and v2 row cap")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Abuse bounds (docs/serving.md, "Under abuse"): over them, 503 with Retry-After.
    max_requests_in_flight: int = Field(128, ge=1, description="probes aside")
    max_body_bytes_in_flight: int = Field(
        64 * 1024 * 1024, ge=1024, description="bytes of request bodies held at once"
    )
    request_header_timeout_seconds: float = Field(
        5.0, gt=0, le=600, description="a request's headers, from its first byte or the connection"
    )
    request_body_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="a request's body, from the end of its headers"
    )
    predict_threads: int = Field(1, ge=1, le=64, description="XGBoost threads per model call")
    microbatch: bool = Field(True, description="coalesce concurrent single-row requests")
    gc_tuning: bool = Field(
        True, description="freeze start-up objects, collect less often (off: Python's defaults)"
    )
    microbatch_max_rows: int = Field(256, ge=1, le=65_536)
    microbatch_max_wait_ms: float = Field(2.0, ge=0, le=50)
    # Model calls with more rows than this run in a worker thread, the rest on the event loop.
    # 0 (always a thread) measured best even on one pinned core: the loop keeps parsing the
    # next micro-batch while XGBoost (which releases the GIL) computes this one.
    inline_predict_max_rows: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _a_body_fits_the_budget(self) -> ServingSettings:
        if self.max_body_bytes > self.max_body_bytes_in_flight:
            raise ValueError("MAX_BODY_BYTES must not exceed MAX_BODY_BYTES_IN_FLIGHT")
        return self

    @field_validator("model_uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        if uri is not None:
            if uri.startswith("s3://"):
                S3Uri.parse(uri)
            elif not uri.removeprefix("file://"):
                raise ValueError("the model URI is empty")
        return uri

    @model_validator(mode="after")
    def _one_location(self) -> ServingSettings:
        if (self.model_uri is None) == (self.model_source_file is None):
            raise ValueError("set exactly one of MODEL_URI and MODEL_SOURCE_FILE")
        pins = self.model_version_id or self.model_sha256 or self.model_trusted_keys
        if self.model_source_file is not None and pins:
            raise ValueError("with MODEL_SOURCE_FILE, pins and trusted keys belong in that file")
        return self
