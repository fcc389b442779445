"""Reading image signatures from ECR, the pure parts: the HTTP Basic header made from
GetAuthorizationToken's answer, the token kept until shortly before it expires and never
shown, and which registry URL an image's signatures are read from."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from retail_operator.aws import signatures
from retail_operator.aws.signatures import EcrTokens, ImageSignatures, basic_header
from retail_operator.errors import TemporaryError
from retail_operator.spec import ImageRef

IMAGE = ImageRef(
    repository="123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api", tag="v1"
)
PASSWORD = "eyJwYXlsb2FkIjoic2VjcmV0In0"
TOKEN = base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()
EXPIRES = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class FakeEcr:
    """GetAuthorizationToken's answers, one per call."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[dict[str, Any]] = []

    def get_authorization_token(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        token = self.tokens.pop(0)
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": EXPIRES}]}


def test_the_header_is_basic_with_ecrs_token_and_its_expiry() -> None:
    token = basic_header({"authorizationToken": TOKEN, "expiresAt": EXPIRES})
    assert token.header == f"Basic {TOKEN}"
    user, password = base64.b64decode(token.header.removeprefix("Basic ")).decode().split(":")
    assert (user, password) == ("AWS", PASSWORD)
    assert token.expires_at == EXPIRES.timestamp()
    assert PASSWORD not in repr(token) and TOKEN not in repr(token)


@pytest.mark.parametrize(
    "token", ["", "not base64!", base64.b64encode(b"no-colon").decode(), "QVdTOg=="]
)
def test_a_token_that_is_not_user_and_password_is_refused_without_showing_it(token: str) -> None:
    with pytest.raises(ValueError) as raised:
        basic_header({"authorizationToken": token, "expiresAt": EXPIRES})
    assert token not in str(raised.value) or not token


def test_a_token_is_kept_until_shortly_before_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renewed = base64.b64encode(b"AWS:renewed").decode()
    ecr = FakeEcr(TOKEN, renewed)
    monkeypatch.setattr(signatures.clients, "ecr", lambda region: ecr)
    now = [EXPIRES.timestamp() - 3600]
    tokens = EcrTokens(clock=lambda: now[0])
    assert tokens.header(IMAGE) == f"Basic {TOKEN}"
    now[0] = EXPIRES.timestamp() - signatures.TOKEN_MARGIN - 1
    assert tokens.header(IMAGE) == f"Basic {TOKEN}"
    assert ecr.calls == [{"registryIds": ["123456789012"]}]
    now[0] += 2  # within the margin: renewed before ECR would refuse it
    assert tokens.header(IMAGE) == f"Basic {renewed}"
    assert tokens.requests == 2


def test_an_unusable_answer_is_temporary_and_names_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(signatures.clients, "ecr", lambda region: FakeEcr("garbage"))
    with pytest.raises(TemporaryError) as raised:
        EcrTokens().header(IMAGE)
    assert raised.value.reason == "RegistryUnavailable" and "garbage" not in str(raised.value)


def test_signatures_are_read_from_the_setting_else_from_the_images_own_registry() -> None:
    assert ImageSignatures().base(IMAGE) == (
        "https://123456789012.dkr.ecr.ap-southeast-1.amazonaws.com"
    )
    local = ImageSignatures(registry_url="http://127.0.0.1:5000/", auth="none")
    assert local.base(IMAGE) == "http://127.0.0.1:5000"
