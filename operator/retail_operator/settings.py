"""The operator's settings: one pydantic-settings object, read once from the environment.

AWS is configured by boto3's standard variables and chain (``AWS_REGION``,
``AWS_ENDPOINT_URL``, IRSA); Kubernetes by the in-cluster config or ``KUBECONFIG``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETAIL_OPERATOR_", frozen=True)

    namespaces: str = Field(
        "",
        description="Namespaces to serve, comma-separated (the namespaced install); empty: all. "
        "The command line's --namespace takes precedence.",
    )
    resync_seconds: float = Field(
        60.0, gt=0, description="Re-check every RetailModel this often (new scans, new models)."
    )
    pending_seconds: float = Field(
        5.0, gt=0, description="Re-check this soon while a scan is in progress."
    )
    concurrency: int = Field(
        32, ge=1, description="Reconciles running at once (and child reactions, apart)."
    )
    service_creates: int = Field(
        8,
        ge=1,
        description="Services created at once: the API server allocates their ClusterIPs one "
        "after another, so more only queue there, past their deadline (a change's go first).",
    )
    model_watch_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the model object of a Canary RetailModel, or of one whose models "
        "must be signed, is looked at (a HEAD), so a new upload starts its canary, or has its "
        "signature judged in the status, within seconds rather than at the next resync.",
    )
    tag_ttl_seconds: float = Field(15.0, ge=0, description="How long a tag→digest is trusted.")
    scan_ttl_seconds: float = Field(60.0, ge=0, description="How long a finished scan is cached.")
    model_ttl_seconds: float = Field(5.0, ge=0, description="How long an S3 HEAD is cached.")
    registry_url: str = Field(
        "",
        description="Where image signatures are read (cosign's layout), only when trusted image "
        "keys are set: a registry URL such as http://127.0.0.1:5000 (the local registry standing "
        "in for ECR's); empty: https:// and the host of the RetailModel's repository URI (ECR).",
    )
    registry_auth: Literal["ecr", "none"] = Field(
        "ecr",
        description="How the registry is read: ecr, HTTP Basic from ECR GetAuthorizationToken "
        "(the operator's AWS identity; needs ecr:GetAuthorizationToken and ecr:BatchGetImage, "
        "ecr:GetDownloadUrlForLayer); none, anonymously (the local registry).",
    )
    registry_timeout_seconds: float = Field(
        10.0, gt=0, description="The longest wait for one registry request."
    )
    liveness_port: int = Field(8080, ge=0, le=65535, description="0 disables /healthz.")
    metrics_port: int = Field(
        8081, ge=0, le=65535, description="Prometheus /metrics and /readyz; 0: off."
    )
    leader_election: bool = Field(
        True, description="Reconcile only while holding the Lease (run several replicas)."
    )
    lease_name: str = Field("retail-operator", description="The coordination.k8s.io Lease.")
    lease_namespace: str = Field(
        "", description="The Lease's namespace; empty: the pod's own namespace (else default)."
    )
    lease_duration_seconds: float = Field(
        15.0, gt=0, description="How long a lease is held; a standby waits this long."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="Stop leading (and writing) this long after the last renewal."
    )
    retry_period_seconds: float = Field(2.0, gt=0, description="How often to renew or try.")

    @model_validator(mode="after")
    def _fenced_leadership(self) -> Settings:
        """A leader must stop acting before a standby may take over (``leadership``)."""
        if self.leader_election and not (
            0
            < self.retry_period_seconds
            < self.renew_deadline_seconds
            < self.lease_duration_seconds
        ):
            raise ValueError(
                "RETAIL_OPERATOR_RETRY_PERIOD_SECONDS < RENEW_DEADLINE_SECONDS < "
                "LEASE_DURATION_SECONDS is required (got "
                f"{self.retry_period_seconds}, {self.renew_deadline_seconds}, "
                f"{self.lease_duration_seconds})"
            )
        return self

    scrape_networks: str = Field(
        "",
        description="CIDRs (comma-separated) whose pod IPs the canary analysis may read "
        "/metrics from; empty: any pod IP.",
    )
