"""Model signatures: made and checked with model-signing, each refusal named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retail_provenance import keys, modelsig
from retail_provenance.verdict import Outcome
from tests.support.signing import KeyPair

MODEL = b"{model bytes, as retailctl writes them}" * 100


@pytest.fixture(scope="module")
def team() -> KeyPair:
    return KeyPair.new()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.ubj"
    path.write_bytes(MODEL)
    return path


def check(model: Path, bundle: bytes | None, *trusted: KeyPair) -> modelsig.verdict.Verdict:
    return modelsig.verify(model, bundle, keys.load_keys(k.public for k in trusted))


def test_a_trusted_keys_signature_over_these_bytes_is_verified(model: Path, team: KeyPair) -> None:
    found = check(model, team.sign(MODEL), KeyPair.new(), team)  # a rotation's two keys
    assert found.verified, found.message
    assert found.key == team.fingerprint
    assert found.message == f"signed by trusted key sha256:{team.fingerprint[:12]}"


def test_the_bundle_names_its_key_by_the_fingerprint_the_policy_lists(team: KeyPair) -> None:
    assert modelsig.key_hint(team.sign(MODEL)) == team.fingerprint


def test_tampered_bytes_are_refused(model: Path, team: KeyPair) -> None:
    bundle = team.sign(MODEL)
    model.write_bytes(MODEL.replace(b"bytes", b"BYTES", 1))
    found = check(model, bundle, team)
    assert found.outcome is Outcome.INVALID
    assert "not the ones key" in found.message


def test_a_signature_by_an_untrusted_key_is_refused(model: Path, team: KeyPair) -> None:
    stranger = KeyPair.new()
    found = check(model, stranger.sign(MODEL), team)
    assert found.outcome is Outcome.UNTRUSTED
    assert stranger.fingerprint[:12] in found.message


def test_a_missing_signature_is_refused(model: Path, team: KeyPair) -> None:
    assert check(model, None, team).outcome is Outcome.UNSIGNED


def test_an_untrusted_signature_claiming_a_trusted_key_does_not_hold(
    model: Path, team: KeyPair
) -> None:
    """A stranger's bundle relabelled with the trusted key's fingerprint: the hint picks the
    key, the key refuses the signature."""
    bundle = json.loads(KeyPair.new().sign(MODEL))
    bundle["verificationMaterial"]["publicKey"]["hint"] = team.fingerprint
    found = check(model, json.dumps(bundle).encode(), team)
    assert found.outcome is Outcome.INVALID


@pytest.mark.parametrize("bundle", [b"", b"not json", b"{}", b'{"verificationMaterial": 1}'])
def test_an_unreadable_signature_is_refused(model: Path, team: KeyPair, bundle: bytes) -> None:
    assert check(model, bundle, team).outcome is Outcome.INVALID


def test_only_p256_keys_are_trusted() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        keys.load_key(pem)
    with pytest.raises(ValueError, match="not a PEM public key"):
        keys.load_keys(["just text"])
