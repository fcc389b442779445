"""boto3 clients for the operator, one per service and region, shared across threads.

Credentials come from boto3's default chain (IRSA on EKS); ``AWS_ENDPOINT_URL`` points every
client at a local stand-in such as moto's server. botocore's standard retry mode backs off on
throttling a few times; past that, the error becomes a condition and a later reconcile retries.
``CONFIG`` is the one client configuration on the operator's side: the tooling (``retailctl
ecr``, the AWS stand-in) builds its clients with it too. The operator's calls run on
``WORKERS``, threads of their own where a change's reconcile goes first (``lanes``).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from retail_operator import metrics
from retail_operator.errors import AccessDenied, OperatorError, TemporaryError
from retail_operator.lanes import Workers

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_s3 import S3Client

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=32,
)
_lock = threading.Lock()
# Threads for the operator's AWS calls (at most this many at once, under the clients' pool of
# connections): a periodic look's call waits behind a change's, never the other way round.
AWS_THREADS = 16
WORKERS = Workers(AWS_THREADS, "aws")

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


def client(service: str, region: str | None = None) -> Any:
    """A new client of ``service`` in ``region`` (default: the credential chain's region),
    counting every HTTP attempt and failure on the operator's /metrics."""
    with _lock:  # boto3 sessions are not thread-safe; clients made from them are
        made = _session().client(service, region_name=region, config=CONFIG)  # type: ignore[call-overload]
    made.meta.events.register(f"after-call.{service}", _count_call)
    made.meta.events.register(f"after-call-error.{service}", _count_unreachable)
    return made


def error_kind(code: str) -> str:
    """A few kinds rather than every AWS error code, to keep the metric's labels bounded."""
    if code in THROTTLING_CODES:
        return "Throttled"
    if code in ACCESS_DENIED_CODES:
        return "AccessDenied"
    if code.endswith(("NotFound", "NotFoundException", "NoSuchKey")) or code == "404":
        return "NotFound"
    return "Other"


def _count_call(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
    service = model.service_model.service_name
    metrics.AWS_CALLS.labels(service, model.name).inc()
    if http_response.status_code >= 400:
        code = str(parsed.get("Error", {}).get("Code", http_response.status_code))
        metrics.AWS_ERRORS.labels(service, error_kind(code)).inc()


def _count_unreachable(model: Any, **_: Any) -> None:
    service = model.service_model.service_name
    metrics.AWS_CALLS.labels(service, model.name).inc()
    metrics.AWS_ERRORS.labels(service, "Unreachable").inc()


_made: dict[tuple[str, str | None], Any] = {}
_making = threading.Lock()


def _shared(service: str, region: str | None) -> Any:
    """One client per service and region for every thread. The first calls come at once from
    the AWS threads; each made a client of its own under ``functools.cache`` (only one was
    kept), so they are made under a lock, once."""
    with _making:
        made = _made.get((service, region))
        if made is None:
            made = _made[(service, region)] = client(service, region)
        return made


def ecr(region: str | None = None) -> ECRClient:
    made: ECRClient = _shared("ecr", region)
    return made


def s3(region: str | None = None) -> S3Client:
    with _lock:
        default = region or _session().region_name or "us-east-1"
    made: S3Client = _shared("s3", default)
    return made


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
