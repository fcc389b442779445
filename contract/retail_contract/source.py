"""The model-source document: which S3 object (and optionally which version and digest) a
predictor serves.

The operator writes it as JSON into a ConfigMap mounted at ``MODEL_SOURCE_PATH``; the predictor
re-reads that file on every poll, so a new pin reaches running pods without a restart. The
same value is the predictor's notion of "where the model lives" for ``MODEL_URI`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MODEL_SOURCE_DIR = "/etc/retailmodel"
MODEL_SOURCE_FILENAME = "model-source.json"  # the key in the ConfigMap, the file name in the pod
MODEL_SOURCE_PATH = f"{MODEL_SOURCE_DIR}/{MODEL_SOURCE_FILENAME}"
# Object metadata key under which ``retailctl model push`` records the model's sha256.
SHA256_METADATA_KEY = "sha256"


def signature_key(model_key: str, sha256: str) -> str:
    """Where a model's signature lives: an object beside it in the same bucket, named by the
    digest of the bytes it signs (as cosign names an image's by its digest), so every version
    of a model object keeps its own signature and an old version pinned by a spec still finds
    its own, not the newest one's."""
    return f"{model_key}.sha256-{sha256.lower()}.sig"


_KEYS = ("uri", "versionId", "sha256")


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``, parsed once."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ValueError(f"an S3 URI needs a bucket and a key: {uri!r}")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ModelSource:
    """Where the model lives (``s3://bucket/key``, or a path for local serving), optionally
    pinned to one S3 object version and to the sha256 its bytes must have. ``None`` means
    "not pinned". ``bucket_owner``, when set (a RetailModelPolicy names it), is the account
    that must own the bucket: every S3 call passes it as ``ExpectedBucketOwner``.
    ``trusted_keys`` (PEM public keys), when any, are the keys a model's signature must be made
    with (``retail_provenance.modelsig``): in the document, so a key rotation reaches running
    pods without a restart."""

    uri: str
    version_id: str | None = None
    sha256: str | None = None
    bucket_owner: str | None = None
    trusted_keys: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The document as the operator writes it (empty strings for "not pinned"; no
        ``bucketOwner`` key when none is required, so documents without one stay as they
        were)."""
        values = (self.uri, self.version_id or "", self.sha256 or "")
        document: dict[str, Any] = dict(zip(_KEYS, values, strict=True))
        if self.bucket_owner:
            document["bucketOwner"] = self.bucket_owner
        if self.trusted_keys:
            document["trustedKeys"] = list(self.trusted_keys)
        return json.dumps(document, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSource:
        """Parse the document; ``ValueError`` names what is wrong with it."""
        document: Any = json.loads(text)  # json.JSONDecodeError is a ValueError
        if not isinstance(document, dict):
            raise ValueError("the model source document must be a JSON object")
        uri, version_id, sha256 = (document.get(key) or None for key in _KEYS)
        if not isinstance(uri, str):
            raise ValueError("the model source document needs a string 'uri'")
        owner = document.get("bucketOwner") or None
        for key, value in (("versionId", version_id), ("sha256", sha256), ("bucketOwner", owner)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"the model source document's {key!r} must be a string")
        keys = document.get("trustedKeys") or []
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError("the model source document's 'trustedKeys' must be a list of strings")
        return cls(uri, version_id, sha256, owner, tuple(keys))
