"""What AWS STS checks before it answers ``AssumeRoleWithWebIdentity`` (IRSA's exchange of a
projected ServiceAccount token for credentials), for the AWS stand-in.

moto answers that call whatever the token says. The stand-in puts ``StsGate`` in front of it,
so that a pod gets credentials only the way EKS gives them: the token must be a JWT signed by
a key its issuer publishes (the cluster's ``/openid/v1/jwks``, as IAM's OIDC provider reads
it), from that issuer, for the provider's audience (``sts.amazonaws.com``), not expired, and the
role must trust its subject (``system:serviceaccount:<namespace>:<name>``), as an IAM role's
trust policy says on EKS. A token that fails is ``InvalidIdentityToken``, a role that does not
trust the subject ``AccessDenied``, each in STS's own error shape. Every call is recorded
(``StsGate.calls``), so a test can tell that credentials came this way.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet, KeySetSerialization

STS_AUDIENCE = "sts.amazonaws.com"
ACTION = "AssumeRoleWithWebIdentity"
# What the API server signs ServiceAccount tokens with (ES256 here, RS256 on EKS).
ALGORITHMS = ("ES256", "RS256")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Refused(Exception):
    """STS's answer to a call it refuses: its error code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


@dataclass(frozen=True)
class IdentityProvider:
    """An OIDC identity provider as IAM registers one: its issuer, the keys it publishes (a
    JWKS) and the audience (client ID) tokens must name."""

    issuer: str
    keys: KeySet
    audience: str = STS_AUDIENCE

    @classmethod
    def from_jwks(
        cls, issuer: str, jwks: Mapping[str, Any], audience: str = STS_AUDIENCE
    ) -> IdentityProvider:
        """The provider whose keys are the JWKS document ``jwks`` (``/openid/v1/jwks``)."""
        return cls(issuer, KeySet.import_key_set(cast(KeySetSerialization, dict(jwks))), audience)

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """The token's claims, if it is this provider's, for its audience and current."""
        try:
            decoded = jwt.decode(token.strip(), self.keys, algorithms=list(ALGORITHMS))
        except JoseError as error:
            raise _invalid(f"the token's signature is not the issuer's: {error}") from None
        claims = jwt.JWTClaimsRegistry(
            now=int(now),
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise Refused("ExpiredTokenException", 400, "the token has expired") from None
        except JoseError as error:
            raise _invalid(f"the token's claims are not for {self.audience}: {error}") from None
        return dict(decoded.claims)


@dataclass(frozen=True)
class WebIdentityCall:
    """One AssumeRoleWithWebIdentity the stand-in was asked for, and what it answered."""

    role_arn: str
    subject: str  # what the token claims (verified only when ``error`` is ""); "" if unreadable
    error: str  # "" when credentials were issued, else the error code


@dataclass
class StsGate:
    """The checks, in front of moto's WSGI app; trust is given per role and subject."""

    providers: list[IdentityProvider] = field(default_factory=list)
    trusts: dict[str, set[str]] = field(default_factory=dict)  # role ARN → subjects
    calls: list[WebIdentityCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def trust(self, role_arn: str, subject: str) -> None:
        with self._lock:
            self.trusts.setdefault(role_arn, set()).add(subject)

    def check(self, role_arn: str, token: str) -> str:
        """The subject the call is made for; ``Refused`` if STS would refuse it."""
        subject = str(_unverified_claims(token).get("sub", ""))
        try:
            self._verified(token)
            if subject not in self.trusts.get(role_arn, set()):
                raise Refused(
                    "AccessDenied",
                    403,
                    f"Not authorized to perform sts:{ACTION}: {role_arn} does not trust {subject}",
                )
        except Refused as refused:
            self._record(WebIdentityCall(role_arn, subject, refused.code))
            raise
        self._record(WebIdentityCall(role_arn, subject, ""))
        return subject

    def wsgi(self, app: WsgiApp) -> WsgiApp:
        """``app`` with this gate before every AssumeRoleWithWebIdentity."""

        def gated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            form = _form(environ)
            if form.get("Action") == ACTION:
                try:
                    self.check(form.get("RoleArn", ""), form.get("WebIdentityToken", ""))
                except Refused as refused:
                    return _error(refused, start_response)
            return app(environ, start_response)

        return gated

    def _verified(self, token: str) -> dict[str, Any]:
        issuer = _unverified_claims(token).get("iss")
        for provider in self.providers:
            if provider.issuer == issuer:
                return provider.verify(token, time.time())
        raise _invalid(f"no OpenIDConnect provider for issuer {issuer!r}")

    def _record(self, call: WebIdentityCall) -> None:
        with self._lock:
            self.calls.append(call)


def _form(environ: dict[str, Any]) -> dict[str, str]:
    """A POST's form fields (the body is put back for the app); {} for anything else."""
    if environ.get("REQUEST_METHOD") != "POST":
        return {}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
        return {}
    return {key: values[0] for key, values in parse_qs(body.decode(errors="replace")).items()}


def _error(refused: Refused, start_response: Callable[..., Any]) -> list[bytes]:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{refused.code}</Code>"
        f"<Message>{_escape(refused.message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    reason = {400: "Bad Request", 403: "Forbidden"}.get(refused.status, "Error")
    start_response(
        f"{refused.status} {reason}",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _invalid(message: str) -> Refused:
    return Refused("InvalidIdentityToken", 400, message)


def _unverified_claims(token: str) -> dict[str, Any]:
    """What a token claims, before anything is checked ({} if it is no JWT)."""
    try:
        claims = json.loads(_unbase64(token.strip().split(".")[1]))
    except (ValueError, IndexError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _unbase64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
