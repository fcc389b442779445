"""Trusted public keys: PEM-encoded ECDSA P-256 keys, as a RetailModelPolicy lists them.

A key is known by its fingerprint, the sha256 of its PEM SubjectPublicKeyInfo encoding: the
same value the OpenSSF model-signing format records as a bundle's key hint, so a model
signature names the key that made it. Only P-256 is accepted: cosign verifies ECDSA with
SHA-256 whatever the curve, model-signing hashes with the curve's size, and one curve keeps
both sides the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class TrustedKey:
    """One public key a signature may be made with."""

    fingerprint: str  # sha256 hex of the PEM SubjectPublicKeyInfo
    public_key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)

    @property
    def pem(self) -> bytes:
        return pem_of(self.public_key)

    @property
    def short(self) -> str:
        """How messages name the key."""
        return f"sha256:{self.fingerprint[:12]}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` (DER ECDSA) is this key's over ``message`` (SHA-256)."""
        try:
            self.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def pem_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint_of(public_key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(pem_of(public_key)).hexdigest()


def generate(password: bytes | None = None) -> tuple[bytes, bytes]:
    """A new key pair as PEM: (private key, PKCS#8, encrypted when ``password`` is given;
    public key, SubjectPublicKeyInfo)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return private_pem, pem_of(private_key.public_key())


def load_key(pem: str | bytes) -> TrustedKey:
    """One PEM public key; ``ValueError`` saying why it cannot be trusted."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        public_key = serialization.load_pem_public_key(data.strip() + b"\n")
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a PEM public key: {error}") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError(f"not an ECDSA key ({type(public_key).__name__})")
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError(f"ECDSA keys must be P-256, not {public_key.curve.name}")
    return TrustedKey(fingerprint_of(public_key), public_key)


def load_keys(pems: Iterable[str | bytes]) -> tuple[TrustedKey, ...]:
    """Several PEM keys, each on its own or several in one text; duplicates once."""
    found: dict[str, TrustedKey] = {}
    for text in pems:
        for block in split_pem(text.decode() if isinstance(text, bytes) else text):
            key = load_key(block)
            found.setdefault(key.fingerprint, key)
    return tuple(found.values())


def split_pem(text: str) -> list[str]:
    """The PEM blocks of a text holding one or more (a key file may hold a rotation's two)."""
    end = "-----END PUBLIC KEY-----"
    blocks = [part + end for part in text.split(end) if part.strip()]
    if not blocks:
        raise ValueError("no PEM public key found")
    return blocks
