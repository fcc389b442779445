"""cosign's layout, without a registry (tests/integration/images proves it against cosign)."""

from __future__ import annotations

import json

import pytest

from retail_provenance import cosign, keys
from retail_provenance.verdict import Outcome
from tests.support.signing import KeyPair

DIGEST = "sha256:" + "ab" * 32
TEAM = KeyPair.new()


def signature(digest: str = DIGEST, signer: KeyPair = TEAM) -> cosign.Signature:
    signed = cosign.payload("registry.example/mlops/retail-api", digest)
    return cosign.Signature(signed, cosign.sign(signed, signer.private_pem))


def check(*signatures: cosign.Signature) -> cosign.verdict.Verdict:
    return cosign.verify(DIGEST, signatures, keys.load_keys([TEAM.public]))


def test_the_signature_tag_and_payload_are_cosigns() -> None:
    assert cosign.signature_tag(DIGEST) == f"sha256-{'ab' * 32}.sig"
    document = json.loads(cosign.payload("r/x", DIGEST))
    assert document == {
        "critical": {
            "identity": {"docker-reference": "r/x"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    with pytest.raises(ValueError):
        cosign.signature_tag("sha512:00")


def test_a_manifest_lists_each_signature_as_an_annotated_layer() -> None:
    mine = signature()
    body, config = cosign.manifest([mine])
    assert cosign.layers(body) == [(mine.layer_digest, mine.signature)]
    assert json.loads(config)["rootfs"]["diff_ids"] == [mine.layer_digest]


def test_verdicts() -> None:
    assert check().outcome is Outcome.UNSIGNED
    assert check(signature()).verified
    assert check(signature(signer=KeyPair.new())).outcome is Outcome.UNTRUSTED
    copied = check(signature(digest="sha256:" + "cd" * 32))
    assert copied.outcome is Outcome.INVALID and "not this image" in copied.message
    garbled = cosign.Signature(signature().payload, "not base64!")
    assert check(garbled).outcome is Outcome.INVALID
    assert check(signature(signer=KeyPair.new()), signature()).verified  # any trusted one
