"""Where model files live: S3 objects (by ETag / VersionId) or local files, behind one protocol.

The reloader only needs two operations: a cheap ``head`` that identifies the current version
of the object, and ``fetch`` that returns exactly the bytes of a version ``head`` reported (by
VersionId when the bucket is versioned, else guarded by If-Match on the ETag, so a concurrent
upload can never hand us a mix of old metadata and new bytes), and no more than ``limit`` of
them: a larger object is refused before its body is read (``ModelTooLarge``), and a body sent
without a length is read no further than the limit. The bytes land in a ``ModelBytes`` as they
arrive, held once. boto3 picks up
credentials and ``AWS_ENDPOINT_URL`` from the standard environment; nothing here handles
secrets.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from retail_contract.source import SHA256_METADATA_KEY, ModelSource, S3Uri, signature_key
from retail_serving.errors import ModelTooLarge, SourceUnavailable
from retail_serving.modelbytes import ModelBytes
from retail_serving.versions import ObjectVersion

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectStore(Protocol):
    """Where one model's bytes are read from: an S3 object or a local file."""

    uri: str
    records_sha256: bool  # whether ``head`` can report the digest recorded at upload

    def head(self) -> ObjectVersion: ...

    def fetch(self, version: ObjectVersion, limit: int) -> ModelBytes: ...

    def fetch_signature(self, sha256: str) -> bytes | None:
        """The signature stored beside the model for the bytes with this digest; ``None``
        when there is none."""
        ...


CHUNK_BYTES = 1 << 20  # a download is read, and held, this much at a time
SIGNATURE_LIMIT = 64 * 1024  # a model-signing bundle is about 1.5 kB; nothing near this


def too_large(uri: str, size: int, limit: int) -> ModelTooLarge:
    return ModelTooLarge(f"{uri} is {size:,} bytes, over the model size limit of {limit:,}")


def read_no_further(uri: str, limit: int) -> ModelTooLarge:
    """A body with no length given, refused once more than ``limit`` bytes have come."""
    return ModelTooLarge(
        f"{uri} sent more than {limit:,} bytes (no length given), over the model size limit; "
        "read no further"
    )


def s3_client() -> S3Client:
    """An S3 client from the standard credential chain, with bounded timeouts and retries."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
    return boto3.session.Session().client("s3", config=config)


def _unavailable(action: str, uri: str, error: Exception) -> SourceUnavailable:
    """One line that says what failed, without echoing request details or credentials."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        return SourceUnavailable(f"{action} {uri} failed: {code}")
    return SourceUnavailable(f"{action} {uri} failed: {type(error).__name__}")


def _version_id(response: Any) -> str | None:
    version_id = response.get("VersionId")
    return None if version_id in (None, "null") else str(version_id)


class S3Store:
    """A model object in S3, optionally pinned to one object version."""

    def __init__(
        self,
        location: S3Uri,
        *,
        pinned_version_id: str | None = None,
        bucket_owner: str | None = None,
    ) -> None:
        self.location = location
        self.pinned_version_id = pinned_version_id
        # Every call names the account that must own the bucket (S3 refuses it otherwise), so a
        # bucket of the same name in another account is never read.
        self._owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}
        self.uri = location.uri
        self.records_sha256 = True
        self._client = s3_client()

    def head(self) -> ObjectVersion:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {
            "Bucket": self.location.bucket,
            "Key": self.location.key,
            **self._owner,
        }
        if self.pinned_version_id:
            arguments["VersionId"] = self.pinned_version_id
        try:
            response = self._client.head_object(**arguments)
        except (BotoCoreError, ClientError) as error:
            raise _unavailable("HEAD", self.uri, error) from error
        return ObjectVersion(
            etag=response.get("ETag", "").strip('"') or None,
            version_id=_version_id(response),
            sha256=response.get("Metadata", {}).get(SHA256_METADATA_KEY),
            size=response.get("ContentLength"),
        )

    def fetch(self, version: ObjectVersion, limit: int) -> ModelBytes:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {
            "Bucket": self.location.bucket,
            "Key": self.location.key,
            **self._owner,
        }
        if version.version_id:
            arguments["VersionId"] = version.version_id
        elif version.etag:
            arguments["IfMatch"] = f'"{version.etag}"'
        try:
            response = self._client.get_object(**arguments)
            body = response["Body"]
            size = response.get("ContentLength")
            try:
                if size is not None and size > limit:
                    raise too_large(self.uri, size, limit)
                # Chunks to the end: botocore then checks the length (a cut-off body is a
                # temporary failure, not a refusal). A body without a length (chunked) is
                # counted as it comes and stops at the limit.
                return ModelBytes.receive(
                    body.iter_chunks(CHUNK_BYTES),
                    limit,
                    lambda _read: read_no_further(self.uri, limit),
                )
            finally:
                body.close()
        except (BotoCoreError, ClientError) as error:
            raise _unavailable("GET", self.uri, error) from error

    def fetch_signature(self, sha256: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = signature_key(self.location.key, sha256)
        where = f"s3://{self.location.bucket}/{key}"
        try:
            arguments: dict[str, Any] = {"Bucket": self.location.bucket, "Key": key, **self._owner}
            response = self._client.get_object(**arguments)
            body = response["Body"]
            try:
                data = body.read(SIGNATURE_LIMIT + 1)
            finally:
                body.close()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _unavailable("GET", where, error) from error
        except BotoCoreError as error:
            raise _unavailable("GET", where, error) from error
        return data if len(data) <= SIGNATURE_LIMIT else b""  # too large: no bundle, refused


class FileStore:
    """A model file on local disk; its version is its size and modification time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uri = str(path)
        self.records_sha256 = False

    def head(self) -> ObjectVersion:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise SourceUnavailable(f"cannot stat {self.path}: {error.strerror}") from error
        return ObjectVersion(
            etag=f"{stat.st_mtime_ns:x}-{stat.st_size:x}", version_id=None, size=stat.st_size
        )

    def fetch(self, version: ObjectVersion, limit: int) -> ModelBytes:
        try:
            with self.path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size  # it may have grown since its HEAD
                if size > limit:
                    raise too_large(self.uri, size, limit)
                chunks = iter(lambda: file.read(CHUNK_BYTES), b"")
                return ModelBytes.receive(
                    chunks, limit, lambda read: too_large(self.uri, read, limit)
                )
        except OSError as error:
            raise SourceUnavailable(f"cannot read {self.path}: {error.strerror}") from error

    def fetch_signature(self, sha256: str) -> bytes | None:
        path = Path(signature_key(str(self.path), sha256))
        try:
            with path.open("rb") as file:
                data = file.read(SIGNATURE_LIMIT + 1)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise SourceUnavailable(f"cannot read {path}: {error.strerror}") from error
        return data if len(data) <= SIGNATURE_LIMIT else b""


def open_store(source: ModelSource) -> ObjectStore:
    """``s3://bucket/key`` → S3, ``file://path`` or a plain path → local file. The URI is
    parsed here, once per change of source (the registry keeps the store across polls)."""
    if source.uri.startswith("s3://"):
        try:
            location = S3Uri.parse(source.uri)
        except ValueError as error:
            raise SourceUnavailable(f"invalid model location: {error}") from None
        return S3Store(
            location, pinned_version_id=source.version_id, bucket_owner=source.bucket_owner
        )
    if not source.uri.removeprefix("file://"):
        raise SourceUnavailable("invalid model location: the model URI is empty")
    if source.version_id:
        raise SourceUnavailable("invalid model location: a version pin needs an s3:// URI")
    return FileStore(Path(source.uri.removeprefix("file://")))


def read_source_file(path: Path) -> ModelSource:
    """The model source in the document the operator mounts from a ConfigMap
    (``retail_contract.source``). Re-read on every poll, so a new pin reaches running pods
    without a restart."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SourceUnavailable(f"cannot read model source file {path}: {error.strerror}") from None
    try:
        return ModelSource.from_json(text)
    except ValueError as error:
        raise SourceUnavailable(f"model source file {path} is not valid: {error}") from None


@dataclass(frozen=True)
class Upload:
    uri: str
    etag: str | None
    version_id: str | None
    sha256: str


def upload_signature(bundle: bytes, location: S3Uri, sha256: str) -> str:
    """PUT a model's signature beside it (``retail_contract.source.signature_key``); its URI."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = signature_key(location.key, sha256)
    try:
        s3_client().put_object(
            Bucket=location.bucket,
            Key=key,
            Body=bundle,
            ContentType="application/vnd.dev.sigstore.bundle.v0.3+json",
            Metadata={SHA256_METADATA_KEY: hashlib.sha256(bundle).hexdigest()},
        )
    except (BotoCoreError, ClientError) as error:
        raise _unavailable("PUT", f"s3://{location.bucket}/{key}", error) from error
    return f"s3://{location.bucket}/{key}"


def upload(data: bytes, location: S3Uri, *, content_type: str) -> Upload:
    """PUT a model file with its sha256 recorded as object metadata."""
    from botocore.exceptions import BotoCoreError, ClientError

    digest = hashlib.sha256(data).hexdigest()
    try:
        response = s3_client().put_object(
            Bucket=location.bucket,
            Key=location.key,
            Body=data,
            ContentType=content_type,
            Metadata={SHA256_METADATA_KEY: digest},
        )
    except (BotoCoreError, ClientError) as error:
        raise _unavailable("PUT", location.uri, error) from error
    return Upload(
        uri=location.uri,
        etag=response.get("ETag", "").strip('"') or None,
        version_id=_version_id(response),
        sha256=digest,
    )
