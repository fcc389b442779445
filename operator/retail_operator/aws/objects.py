"""S3 look-ups for model objects: a HEAD, honouring a pinned version; and, when models must
be signed, their signature check.

The operator needs to know the object exists and what it is (ETag, VersionId, the ``sha256``
metadata written by ``retailctl model push``); the serving pods do the download they serve
from. When a trusted key is required, ``signature`` reads the signature stored beside the
object (``retail_contract.source.signature_key``, found by the recorded sha256), and only if a
trusted key made it, downloads that exact object version into memory and checks it with the
same library call the pods make (``retail_provenance.modelsig``). The verdict is cached per
object version and set of keys: each version is downloaded once (an hour's cache) by an
operator, not on every reconcile; an Unsigned verdict is kept only as long as a HEAD, so a
signature stored later is soon found.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from retail_contract.source import SHA256_METADATA_KEY, signature_key
from retail_operator.aws import clients
from retail_operator.cache import TtlCache
from retail_operator.errors import AccessDenied, ModelNotFound
from retail_operator.facts import ModelObject
from retail_operator.spec import ModelSpec
from retail_provenance import modelsig, verdict
from retail_provenance.keys import TrustedKey, load_keys

_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"})
_DENIED = frozenset({"403", "AccessDenied", "Forbidden"})
SIGNATURE_LIMIT = 64 * 1024  # a model-signing bundle is about 1.5 kB
CHECK_LIMIT = 256 * 1024 * 1024  # the largest model the operator downloads to check (memory)
CHUNK = 1 << 20
VERDICT_TTL = 3600.0  # a verdict over an object version and a set of keys


class ModelInspector:
    def __init__(self, *, ttl: float = 5.0) -> None:
        self._heads: TtlCache[tuple[str, str, str], ModelObject] = TtlCache(lambda _: ttl)
        self._verdicts: TtlCache[tuple[str, ...], verdict.Verdict] = TtlCache(
            lambda found: ttl if found.outcome is verdict.Outcome.UNSIGNED else VERDICT_TTL
        )
        self._downloads = asyncio.Semaphore(2)  # models held in memory at once, at most
        self.calls = 0
        self.downloads = 0

    async def signature(
        self,
        source: ModelSpec,
        found: ModelObject,
        trusted: tuple[str, ...],
        *,
        bucket_owner: str = "",
    ) -> verdict.Verdict:
        """Whether a trusted key signed exactly the object version ``found`` describes.
        ``ValueError`` when a trusted key cannot be read; ``OperatorError`` when S3 fails."""
        keys = load_keys(trusted)
        fingerprints = tuple(sorted(k.fingerprint for k in keys))
        cache_key = (source.s3_uri, found.version_id, found.etag, found.sha256, bucket_owner)
        return await self._verdicts.get(
            cache_key + fingerprints,
            lambda: self._checked(source, found, keys, bucket_owner),
        )

    async def _checked(
        self, source: ModelSpec, found: ModelObject, keys: tuple[TrustedKey, ...], owner: str
    ) -> verdict.Verdict:
        if not found.sha256:
            return verdict.unsigned(
                "the object has no sha256 metadata, by which its signature would be found"
            )
        bundle = await clients.WORKERS.run(self._get_signature, source, found.sha256, owner)
        if bundle is None:
            where = signature_key(source.s3_uri, found.sha256)
            return verdict.unsigned(f"no signature at {where}")
        named = modelsig.signer(bundle, keys)
        if isinstance(named, verdict.Verdict):  # refused without a download
            return named
        async with self._downloads:
            return await clients.WORKERS.run(
                self._download_and_verify, source, found, bundle, keys, owner
            )

    def _owner(self, owner: str) -> dict[str, Any]:
        return {"ExpectedBucketOwner": owner} if owner else {}

    def _get_signature(self, source: ModelSpec, sha256: str, owner: str) -> bytes | None:
        location = source.location
        key = signature_key(location.key, sha256)
        try:
            response = clients.s3().get_object(
                Bucket=location.bucket, Key=key, **self._owner(owner)
            )
            body = response["Body"]
            try:
                data: bytes = body.read(SIGNATURE_LIMIT + 1)
            finally:
                body.close()
        except ClientError as error:
            code = clients.error_code(error)
            if code in _MISSING:
                return None
            if code in _DENIED:
                raise AccessDenied(f"access denied reading s3://{location.bucket}/{key}") from None
            raise clients.translate(error, f"S3 s3://{location.bucket}/{key}") from None
        except BotoCoreError as error:
            raise clients.translate(error, f"S3 s3://{location.bucket}/{key}") from None
        return data if len(data) <= SIGNATURE_LIMIT else b""  # refused as unreadable

    def _download_and_verify(
        self,
        source: ModelSpec,
        found: ModelObject,
        bundle: bytes,
        keys: tuple[TrustedKey, ...],
        owner: str,
    ) -> verdict.Verdict:
        if found.size > CHECK_LIMIT:
            return verdict.invalid(
                f"the object is {found.size:,} bytes, more than the {CHECK_LIMIT:,} the "
                "operator checks"
            )
        location = source.location
        kwargs: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key}
        if found.version_id:
            kwargs["VersionId"] = found.version_id
        elif found.etag:
            kwargs["IfMatch"] = f'"{found.etag}"'
        self.downloads += 1
        fd = os.memfd_create("model-check", os.MFD_CLOEXEC)
        try:
            try:
                response = clients.s3().get_object(**kwargs, **self._owner(owner))
                body = response["Body"]  # its context manager hands out the raw stream
                try:
                    written = 0
                    for chunk in body.iter_chunks(CHUNK):
                        written += os.write(fd, chunk)
                        if written > CHECK_LIMIT:
                            return verdict.invalid("the object is larger than its HEAD said")
                finally:
                    body.close()
            except ClientError as error:
                if clients.error_code(error) in _DENIED:
                    raise AccessDenied(f"access denied reading {source.s3_uri}") from None
                raise clients.translate(error, f"S3 {source.s3_uri}") from None
            except BotoCoreError as error:
                raise clients.translate(error, f"S3 {source.s3_uri}") from None
            return modelsig.verify(Path(f"/proc/self/fd/{fd}"), bundle, keys)
        finally:
            os.close(fd)

    async def head(self, source: ModelSpec, *, bucket_owner: str = "") -> ModelObject:
        """The object's HEAD; with ``bucket_owner``, only from a bucket that account owns (S3
        refuses the call otherwise, which reads as AccessDenied)."""
        return await self._heads.get(
            (source.s3_uri, source.version_id, bucket_owner),
            lambda: clients.WORKERS.run(self._head, source, bucket_owner),
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
