"""Image signatures in cosign's registry layout, key based (ECDSA P-256), so that
``cosign verify --key`` accepts ours and ours accepts ``cosign sign --key``'s.

The layout (cosign's "legacy" one, which cosign 2 writes by default and ECR's tooling reads):
beside the image ``repo@sha256:<hex>`` the registry holds a manifest tagged
``sha256-<hex>.sig``; each of its layers is a *simple signing* payload (media type
``application/vnd.dev.cosign.simplesigning.v1+json``, a small JSON naming the image's manifest
digest) whose annotation ``dev.cosignproject.cosign/signature`` is the base64 of an ECDSA
(SHA-256, DER) signature over the payload's bytes.

Why not a library: sigstore-python signs and verifies Sigstore bundles (keyless, or keys only
through its bundle format), not cosign's key-based registry layout, and no maintained Python
package writes that layout. So the crypto is ``cryptography``'s ECDSA, and what is written
here is the layout and the payload, proved against cosign itself in the tests (both ways).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retail_provenance import verdict
from retail_provenance.keys import TrustedKey

PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def signature_tag(digest: str) -> str:
    """The tag of an image's signatures: ``sha256:<hex>`` → ``sha256-<hex>.sig``."""
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64:
        raise ValueError(f"not a sha256 image digest: {digest!r}")
    return f"sha256-{hex_digest}.sig"


def payload(repository: str, digest: str) -> bytes:
    """The simple signing payload for ``repository@digest``, as cosign writes it."""
    document = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def sign(data: bytes, private_key_pem: bytes, password: bytes | None = None) -> str:
    """The base64 ECDSA P-256 (SHA-256) signature of ``data``: the layer's annotation."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(private_key_pem, password)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("image signing keys must be ECDSA P-256")
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


@dataclass(frozen=True)
class Signature:
    """One layer of a signature manifest: the payload's bytes and its signature (base64)."""

    payload: bytes
    signature: str

    @property
    def layer_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.payload).hexdigest()


def manifest(signatures: Sequence[Signature]) -> tuple[bytes, bytes]:
    """The signature manifest and its config blob, for ``signatures`` (one layer each)."""
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [s.layer_digest for s in signatures]},
        },
        separators=(",", ":"),
    ).encode()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": len(config),
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        },
        "layers": [
            {
                "mediaType": PAYLOAD_MEDIA_TYPE,
                "size": len(s.payload),
                "digest": s.layer_digest,
                "annotations": {SIGNATURE_ANNOTATION: s.signature},
            }
            for s in signatures
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode(), config


def layers(manifest_body: bytes) -> list[tuple[str, str]]:
    """The (layer digest, signature annotation) of each signature layer of a manifest."""
    document: Any = json.loads(manifest_body)
    found = []
    for layer in document.get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != PAYLOAD_MEDIA_TYPE:
            continue
        annotation = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if isinstance(annotation, str) and isinstance(layer.get("digest"), str):
            found.append((layer["digest"], annotation))
    return found


def _signed_digest(data: bytes) -> str | None:
    try:
        document: Any = json.loads(data)
        critical = document["critical"]
        if critical["type"] != SIGNATURE_TYPE:
            return None
        return str(critical["image"]["docker-manifest-digest"])
    except (ValueError, KeyError, TypeError):
        return None


def verify(
    digest: str, signatures: Sequence[Signature], trusted: Sequence[TrustedKey]
) -> verdict.Verdict:
    """Whether a trusted key signed a payload naming exactly ``digest``.

    cosign signatures name no key, so a signature no trusted key verifies is UntrustedKey
    (whether another key made it or its bytes were altered cannot be told apart); one a trusted
    key made over a payload naming another image is SignatureInvalid (a signature copied from
    another image), and so is an unreadable one."""
    if not signatures:
        return verdict.unsigned(f"no signature at {signature_tag(digest)}")
    problems: list[str] = []
    for signature in signatures:
        try:
            raw = base64.b64decode(signature.signature, validate=True)
        except ValueError:
            problems.append("a signature is not base64")
            continue
        key = next((k for k in trusted if k.verifies(raw, signature.payload)), None)
        if key is None:
            continue
        signed = _signed_digest(signature.payload)
        if signed == digest:
            return verdict.verified(
                f"{digest[:19]}… signed by trusted key {key.short}", key.fingerprint
            )
        problems.append(
            f"key {key.short} signed {signed or 'an unreadable payload'}, not this image"
        )
    if problems:
        return verdict.invalid("; ".join(problems))
    return verdict.untrusted(
        f"{len(signatures)} signature(s), none by one of the {len(trusted)} trusted key(s)"
    )
