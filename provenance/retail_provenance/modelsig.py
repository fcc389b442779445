"""Model signatures in the OpenSSF model-signing format, made and checked with its own library
(``model-signing``, sigstore/model-transparency), key based: an ECDSA P-256 key pair.

A signature is a Sigstore bundle (JSON): a DSSE envelope over an in-toto statement whose
manifest holds the sha256 of the model file, signed with the private key, and the sha256 of
the public key's PEM as the bundle's key hint. ``retailctl model push`` stores it beside the
model object, named by the model's digest (``retail_contract.source.signature_key``).

``verify`` says which of four things holds (``verdict``): no signature (Unsigned); a key hint
that names no trusted key (UntrustedKey); a signature that does not hold, or holds over other
bytes (SignatureInvalid); or Verified. The library is imported only when a check runs (it
brings Sigstore's client with it, about a second and a half to import), so a process that is
never asked to check models never pays for it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retail_provenance import verdict
from retail_provenance.keys import TrustedKey


def _hashing() -> Any:
    """The manifest model-signing builds for one file: its sha256 under the name ".".

    Symbolic links are followed: the predictor hands the library its sealed memory file as
    ``/proc/self/fd/N``. The file's name is not part of what is signed."""
    from model_signing import hashing

    config = hashing.Config()  # type: ignore[no-untyped-call]
    return config.use_file_serialization(hashing_algorithm="sha256").set_allow_symlinks(True)


def sign(model: Path, private_key: Path, *, password: str | None = None) -> bytes:
    """The signature (a Sigstore bundle, JSON) of the model file at ``model``."""
    from model_signing import signing

    with tempfile.TemporaryDirectory(prefix="modelsig-") as scratch:
        bundle = Path(scratch) / "model.sig"
        config = signing.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_signer(private_key=private_key, password=password)
        config.set_hashing_config(_hashing()).sign(model, bundle)
        return bundle.read_bytes()


def key_hint(bundle: bytes) -> str:
    """The fingerprint the bundle says its key has; ``ValueError`` when it is no bundle."""
    try:
        document = json.loads(bundle)
        hint = document["verificationMaterial"]["publicKey"]["hint"]
        envelope = document["dsseEnvelope"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"not a model-signing bundle ({type(error).__name__})") from None
    if not isinstance(hint, str) or not hint or not isinstance(envelope, dict):
        raise ValueError("the bundle names no public key")
    return hint.lower()


def signer(bundle: bytes, trusted: Sequence[TrustedKey]) -> TrustedKey | verdict.Verdict:
    """The trusted key the bundle says made it, or the verdict refusing the bundle (unreadable,
    or made with a key that is not trusted): judged without the model's bytes."""
    try:
        hint = key_hint(bundle)
    except ValueError as error:
        return verdict.invalid(f"the signature is unreadable: {error}")
    key = next((k for k in trusted if k.fingerprint == hint), None)
    if key is None:
        return verdict.untrusted(
            f"signed with key sha256:{hint[:12]}, which is not one of the "
            f"{len(trusted)} trusted key(s)"
        )
    return key


def verify(model: Path, bundle: bytes | None, trusted: Sequence[TrustedKey]) -> verdict.Verdict:
    """Whether ``bundle`` is a trusted key's signature over exactly the file at ``model``."""
    if bundle is None:
        return verdict.unsigned("the model has no signature")
    key = signer(bundle, trusted)
    if isinstance(key, verdict.Verdict):
        return key
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    with tempfile.TemporaryDirectory(prefix="modelsig-") as scratch:
        public_key, signature = Path(scratch) / "key.pub", Path(scratch) / "model.sig"
        public_key.write_bytes(key.pem)
        signature.write_bytes(bundle)
        config = verifying.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_verifier(public_key=public_key)
        try:
            config.set_hashing_config(_hashing()).verify(model, signature)
        except InvalidSignature:
            return verdict.invalid(f"the signature does not hold under key {key.short}")
        except ValueError as error:
            if str(error).startswith("Signature mismatch"):
                return verdict.invalid(f"the model's bytes are not the ones key {key.short} signed")
            return verdict.invalid(f"the signature does not hold: {_first_line(error)}")
        except Exception as error:  # a malformed bundle fails in the library's parsers
            return verdict.invalid(f"the signature is unreadable: {type(error).__name__}")
    return verdict.verified(f"signed by trusted key {key.short}", key.fingerprint)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
