"""S3 look-ups for model objects: a HEAD, honouring a pinned version, never a download.

The operator only needs to know the object exists and what it is (ETag, VersionId, the
``sha256`` metadata written by ``retailctl model push``); the serving pods do the download.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from retail_contract.source import SHA256_METADATA_KEY
from retail_operator.aws import clients
from retail_operator.cache import TtlCache
from retail_operator.errors import AccessDenied, ModelNotFound
from retail_operator.facts import ModelObject
from retail_operator.spec import ModelSpec

_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"})
_DENIED = frozenset({"403", "AccessDenied", "Forbidden"})


class ModelInspector:
    def __init__(self, *, ttl: float = 5.0) -> None:
        self._heads: TtlCache[tuple[str, str, str], ModelObject] = TtlCache(lambda _: ttl)
        self.calls = 0

    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject:
        """The object's HEAD; with ``bucket_owner``, only from a bucket that account owns (S3
        refuses the call otherwise, which reads as AccessDenied)."""
        return await self._heads.get(
            (source.s3_uri, source.version_id, bucket_owner),
            lambda: asyncio.to_thread(self._head, source, bucket_owner),
        )

    def _head(self, source: ModelSpec, bucket_owner: str) -> ModelObject:
        self.calls += 1
        location = source.location
        kwargs: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key}
        if source.version_id:
            kwargs["VersionId"] = source.version_id
        if bucket_owner:
            kwargs["ExpectedBucketOwner"] = bucket_owner
        try:
            head = clients.s3().head_object(**kwargs)
        except ClientError as error:
            code = clients.error_code(error)
            where = source.s3_uri + (f" (version {source.version_id})" if source.version_id else "")
            if code in _MISSING:
                raise ModelNotFound(f"no model object at {where}") from None
            if code in _DENIED:
                raise AccessDenied(f"access denied reading {where}") from None
            # A version id that is malformed for this bucket comes back as 400.
            if code == "400" and source.version_id:
                raise ModelNotFound(f"no model object at {where}") from None
            raise clients.translate(error, f"S3 {source.s3_uri}") from None
        except BotoCoreError as error:
            raise clients.translate(error, f"S3 {source.s3_uri}") from None
        metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        return ModelObject(
            etag=str(head.get("ETag", "")).strip('"'),
            version_id=str(head.get("VersionId", "") or ""),
            sha256=str(metadata.get(SHA256_METADATA_KEY, "")),
            size=int(head.get("ContentLength", 0) or 0),
        )
