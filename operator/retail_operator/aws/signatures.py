"""Image signatures: the cosign signatures of an image's digest, read from the registry that
serves it, and judged against the trusted keys with ``retail_provenance.cosign`` (the same
layout ``retailctl image push --signing-key`` writes and ``cosign verify`` reads).

Where the registry is: ``registry_url`` when set (the local registry standing in for ECR's,
``http://127.0.0.1:<port>``), else ``https://`` and the host of the image's repository URI
(the ECR registry itself). How it is read: with ``ecr`` credentials, HTTP Basic from ECR's
GetAuthorizationToken for the image's account and region, kept until shortly before the token
expires (``EcrTokens``); with ``none``, anonymously. The token is never logged nor put in a
message. The repository read is the ECR repository the RetailModel names.

Reads run on the operator's AWS threads (``clients.WORKERS``), so the event loop never waits
on the network and a change's check goes ahead of the periodic looks' (``lanes``), each request
with a timeout. A verdict is cached per repository, digest and set of keys (an hour: a signature
over a digest does not change), an Unsigned one only briefly so a signature pushed later is
soon found. A registry that cannot be read is a ``TemporaryError``: the check is Unknown and
tried again soon, and nothing new rolls out meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from retail_operator.aws import clients
from retail_operator.cache import TtlCache
from retail_operator.errors import TemporaryError
from retail_operator.spec import ImageRef
from retail_provenance import cosign, oci, verdict
from retail_provenance.keys import TrustedKey, load_keys

VERDICT_TTL = 3600.0  # a verdict over a digest and a set of keys
TOKEN_MARGIN = 300.0  # a token is renewed this long before ECR says it expires
RETRY_SECONDS = 5.0  # an unreadable registry is tried again this soon
Auth = Literal["ecr", "none"]


@dataclass(frozen=True)
class Token:
    """An Authorization header's value for one registry, and when to stop using it."""

    header: str = field(repr=False)
    expires_at: float  # time.time()


def basic_header(authorization_data: Mapping[str, Any]) -> Token:
    """The header from one item of GetAuthorizationToken's ``authorizationData``: its token is
    already base64 of ``AWS:<password>``, which is what HTTP Basic sends. ``ValueError`` when
    it is not (the message never holds the token)."""
    token = str(authorization_data.get("authorizationToken", ""))
    try:
        user, colon, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        raise ValueError("ECR's authorization token is not base64 of user:password") from None
    if not (user and colon and password):
        raise ValueError("ECR's authorization token is not base64 of user:password")
    expires = authorization_data.get("expiresAt")
    expires_at = expires.timestamp() if isinstance(expires, datetime) else time.time() + 3600
    return Token(f"Basic {token}", expires_at)


class EcrTokens:
    """ECR authorization per (registry id, region), renewed before it expires. Thread-safe:
    the registry reads that need them run in worker threads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], Token] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def header(self, image: ImageRef) -> str:
        """``TemporaryError`` or ``AccessDenied`` when ECR does not give one."""
        key = (image.registry_id, image.region)
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at - TOKEN_MARGIN <= self._clock():
                token = self._tokens[key] = self._request(image)
            return token.header

    def _request(self, image: ImageRef) -> Token:
        self.requests += 1
        where = f"ECR GetAuthorizationToken for {image.registry_id}"
        try:
            response = clients.ecr(image.region).get_authorization_token(
                registryIds=[image.registry_id]
            )
        except (ClientError, BotoCoreError) as error:
            raise clients.translate(error, where) from None
        found = response.get("authorizationData") or []
        if not found:
            raise TemporaryError(f"{where}: no authorization data", reason="RegistryUnavailable")
        try:
            return basic_header(dict(found[0]))
        except ValueError as error:
            raise TemporaryError(f"{where}: {error}", reason="RegistryUnavailable") from None


class ImageSignatures:
    """Reads and judges image signatures, sharing verdicts across every RetailModel."""

    def __init__(
        self,
        *,
        registry_url: str = "",
        auth: Auth = "ecr",
        timeout: float = 10.0,
        unsigned_ttl: float = 5.0,
        tokens: EcrTokens | None = None,
    ) -> None:
        self._registry_url = registry_url.rstrip("/")
        self._auth = auth
        self._timeout = timeout
        self._tokens = tokens or EcrTokens()
        self._verdicts: TtlCache[tuple[str, ...], verdict.Verdict] = TtlCache(
            lambda found: unsigned_ttl if found.outcome is verdict.Outcome.UNSIGNED else VERDICT_TTL
        )
        self.reads = 0  # signature reads from the registry (for the benchmark and tests)

    def base(self, image: ImageRef) -> str:
        """The registry's URL for ``image``."""
        return self._registry_url or "https://" + image.repository.partition("/")[0]

    async def check(
        self, image: ImageRef, digest: str, trusted: tuple[str, ...]
    ) -> verdict.Verdict:
        """Whether a trusted key signed exactly ``digest``. ``ValueError`` when a trusted key
        cannot be read; ``OperatorError`` when the registry (or ECR's token) cannot be read."""
        keys = load_keys(trusted)
        fingerprints = tuple(sorted(k.fingerprint for k in keys))
        return await self._verdicts.get(
            (image.repository, digest, *fingerprints),
            lambda: clients.WORKERS.run(self._read_and_verify, image, digest, keys),
        )

    def _read_and_verify(
        self, image: ImageRef, digest: str, keys: tuple[TrustedKey, ...]
    ) -> verdict.Verdict:
        self.reads += 1
        base = self.base(image)
        header = self._tokens.header(image) if self._auth == "ecr" else ""
        registry = oci.Registry(base, authorization=header, timeout=self._timeout)
        try:
            found = registry.signatures(image.repository_name, digest)
        except (oci.RegistryError, ValueError) as error:
            raise TemporaryError(
                f"the signatures of {image.repository_name}@{digest[:19]}… could not be read "
                f"from {base}: {error}",
                reason="RegistryUnavailable",
                retry_after=RETRY_SECONDS,
            ) from None
        return cosign.verify(digest, found, keys)
