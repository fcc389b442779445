"""boto3 clients for the operator, one per service and region, shared across threads.

Credentials come from boto3's default chain (IRSA on EKS); ``AWS_ENDPOINT_URL`` points every
client at a local stand-in such as moto's server. botocore's standard retry mode backs off on
throttling a few times; past that, the error becomes a condition and a later reconcile retries.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from retail_operator.errors import AccessDenied, OperatorError, TemporaryError

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_s3 import S3Client

_RETRIES = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=32,
)
_lock = threading.Lock()

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalServerError",
        "ServerException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "403", "Forbidden", "UnauthorizedOperation"}
)


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


def _client(service: str, region: str) -> Any:
    with _lock:  # boto3 sessions are not thread-safe; clients made from them are
        return _session().client(service, region_name=region, config=_RETRIES)  # type: ignore[call-overload]


@cache
def ecr(region: str) -> ECRClient:
    client: ECRClient = _client("ecr", region)
    return client


@cache
def s3(region: str | None = None) -> S3Client:
    client: S3Client = _client("s3", region or _session().region_name or "us-east-1")
    return client


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def translate(error: Exception, what: str) -> OperatorError:
    """Map a boto3 failure that has no more specific meaning to temporary or access denied."""
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in ACCESS_DENIED_CODES:
            return AccessDenied(f"access denied to {what}: {code}")
        if code in THROTTLING_CODES:
            return TemporaryError(f"{what}: AWS throttled the request ({code})", reason="Throttled")
        return TemporaryError(f"{what}: {code or 'error'}", reason="AwsError")
    if isinstance(error, BotoCoreError):
        return TemporaryError(f"{what}: {type(error).__name__}", reason="AwsUnreachable")
    return TemporaryError(f"{what}: {type(error).__name__}", reason="AwsError")
