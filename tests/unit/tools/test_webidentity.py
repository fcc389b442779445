"""The stand-in's STS checks a web identity as AWS does before issuing credentials: the
issuer's signature, the audience, the lifetime, and the role's trust in the subject."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from retail_tools.webidentity import IdentityProvider, Refused, StsGate

ISSUER = "https://kubernetes.default.svc.cluster.local"
ROLE = "arn:aws:iam::123456789012:role/retail-predictor-irsa"
SUBJECT = "system:serviceaccount:retail:retail-predictor"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _number(value: int) -> str:
    return _b64(value.to_bytes(32, "big"))


def jwks(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": kid,
                "alg": "ES256",
                "x": _number(numbers.x),
                "y": _number(numbers.y),
            }
        ]
    }


def token(key: ec.EllipticCurvePrivateKey, kid: str = "k1", **claims: Any) -> str:
    """A ServiceAccount token as the API server signs one (ES256)."""
    now = int(time.time())
    body = {"iss": ISSUER, "aud": ["sts.amazonaws.com"], "sub": SUBJECT, "exp": now + 600,
            "nbf": now - 5, "iat": now - 5, **claims}  # fmt: skip
    header = _b64(json.dumps({"alg": "ES256", "kid": kid}).encode())
    payload = _b64(json.dumps(body).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def gate(key: ec.EllipticCurvePrivateKey) -> StsGate:
    gate = StsGate()
    gate.providers.append(IdentityProvider.from_jwks(ISSUER, jwks(key)))
    gate.trust(ROLE, SUBJECT)
    return gate


def test_a_token_of_the_issuer_for_sts_and_a_trusting_role_is_accepted(
    gate: StsGate, key: ec.EllipticCurvePrivateKey
) -> None:
    assert gate.check(ROLE, token(key)) == SUBJECT
    assert [(c.role_arn, c.subject, c.error) for c in gate.calls] == [(ROLE, SUBJECT, "")]


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": ["https://kubernetes.default.svc.cluster.local"]}, "InvalidIdentityToken"),
        ({"aud": "sts.amazonaws.com.evil"}, "InvalidIdentityToken"),
        ({"exp": int(time.time()) - 1}, "ExpiredTokenException"),
        ({"sub": "system:serviceaccount:retail:default"}, "AccessDenied"),
    ],
    ids=["the API server's audience", "another audience", "expired", "an untrusted subject"],
)
def test_what_sts_refuses_is_refused_and_recorded(
    gate: StsGate, key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], code: str
) -> None:
    with pytest.raises(Refused) as refused:
        gate.check(ROLE, token(key, **claims))
    assert refused.value.code == code
    # Recorded with the subject the token claims, so a refusal can be told apart by who asked.
    assert (gate.calls[-1].subject, gate.calls[-1].error) == (claims.get("sub", SUBJECT), code)


def test_a_token_signed_by_another_key_or_issuer_or_no_token_is_invalid(gate: StsGate) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    for forged in (token(stranger), token(stranger, kid="k2"), "not-a-jwt", ""):
        with pytest.raises(Refused, match="signature|JWT|issuer"):
            gate.check(ROLE, forged)
    with pytest.raises(Refused, match="no OpenIDConnect provider"):
        gate.check(ROLE, token(stranger, iss="https://elsewhere.example"))


def test_a_role_trusts_only_the_subjects_it_names(
    gate: StsGate, key: ec.EllipticCurvePrivateKey
) -> None:
    other_role = "arn:aws:iam::123456789012:role/retail-operator-irsa"
    with pytest.raises(Refused) as refused:
        gate.check(other_role, token(key))
    assert refused.value.code == "AccessDenied" and refused.value.status == 403


def _call(gate: StsGate, body: dict[str, str]) -> tuple[str, bytes, bytes]:
    """One POST through the gate to an app that echoes what it was sent."""
    encoded = urlencode(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(encoded)),
        "wsgi.input": io.BytesIO(encoded),
    }
    statuses: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))]

    answer = b"".join(gate.wsgi(app)(environ, lambda status, _headers: statuses.append(status)))
    return statuses[0], answer, encoded


def test_the_gate_answers_a_refusal_in_sts_shape_and_passes_the_rest_untouched(
    gate: StsGate, key: ec.EllipticCurvePrivateKey
) -> None:
    refused = {"Action": "AssumeRoleWithWebIdentity", "RoleArn": ROLE, "WebIdentityToken": "x"}
    status, answer, _ = _call(gate, refused)
    assert status.startswith("400")
    assert b"<Code>InvalidIdentityToken</Code>" in answer and b"<ErrorResponse" in answer

    accepted = {**refused, "WebIdentityToken": token(key)}
    status, answer, sent = _call(gate, accepted)
    assert status == "200 OK" and answer == sent  # moto gets the body as it came

    other = {"Action": "GetCallerIdentity"}
    assert _call(gate, other)[1] == urlencode(other).encode()
