"""Where model files live: S3 objects (by ETag / VersionId) or local files, behind one protocol.

The reloader only needs two operations: a cheap ``head`` that identifies the current version
of the object, and ``fetch`` that returns exactly the bytes of a version ``head`` reported (by
VersionId when the bucket is versioned, else guarded by If-Match on the ETag, so a concurrent
upload can never hand us a mix of old metadata and new bytes). boto3 picks up credentials and
``AWS_ENDPOINT_URL`` from the standard environment; nothing here handles secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from retail_serving.artifact import sha256_hex
from retail_serving.errors import SourceUnavailable
from retail_serving.versions import ModelLocation, ObjectVersion

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SHA256_METADATA_KEY = "sha256"


class ModelSource(Protocol):
    uri: str
    records_sha256: bool  # whether ``head`` can report the digest recorded at upload

    def head(self) -> ObjectVersion: ...

    def fetch(self, version: ObjectVersion) -> bytes: ...


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key:
            raise ValueError(f"S3 URI needs a bucket and a key: {uri!r}")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


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


class S3Source:
    """A model object in S3, optionally pinned to one object version."""

    def __init__(self, location: S3Location, *, pinned_version_id: str | None = None) -> None:
        self.location = location
        self.pinned_version_id = pinned_version_id
        self.uri = location.uri
        self.records_sha256 = True
        self._client = s3_client()

    def head(self) -> ObjectVersion:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self.location.key}
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
        )

    def fetch(self, version: ObjectVersion) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self.location.key}
        if version.version_id:
            arguments["VersionId"] = version.version_id
        elif version.etag:
            arguments["IfMatch"] = f'"{version.etag}"'
        try:
            response = self._client.get_object(**arguments)
            return bytes(response["Body"].read())
        except (BotoCoreError, ClientError) as error:
            raise _unavailable("GET", self.uri, error) from error


class FileSource:
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
        return ObjectVersion(etag=f"{stat.st_mtime_ns:x}-{stat.st_size:x}", version_id=None)

    def fetch(self, version: ObjectVersion) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise SourceUnavailable(f"cannot read {self.path}: {error.strerror}") from error


def check_uri(uri: str) -> None:
    """Raise ``ValueError`` unless ``uri`` is ``s3://bucket/key``, ``file://path`` or a path."""
    if uri.startswith("s3://"):
        S3Location.parse(uri)
    elif not uri.removeprefix("file://"):
        raise ValueError("the model URI is empty")


def open_source(location: ModelLocation) -> ModelSource:
    """``s3://bucket/key`` → S3, ``file://path`` or a plain path → local file."""
    try:
        check_uri(location.uri)
    except ValueError as error:
        raise SourceUnavailable(f"invalid model location: {error}") from None
    if location.uri.startswith("s3://"):
        return S3Source(S3Location.parse(location.uri), pinned_version_id=location.version_id)
    if location.version_id:
        raise SourceUnavailable("invalid model location: a version pin needs an s3:// URI")
    return FileSource(Path(location.uri.removeprefix("file://")))


def read_location_file(path: Path) -> ModelLocation:
    """The location described by a JSON file ``{"uri", "versionId", "sha256"}`` (what the
    operator mounts from a ConfigMap); empty strings mean "not pinned". Re-read on every poll,
    so a new pin reaches running pods without a restart."""
    try:
        document: Any = json.loads(path.read_text())
    except OSError as error:
        raise SourceUnavailable(f"cannot read model source file {path}: {error.strerror}") from None
    except ValueError as error:
        raise SourceUnavailable(f"model source file {path} is not JSON: {error}") from None
    fields = document if isinstance(document, dict) else {}
    uri, version_id, sha256 = (fields.get(key) or None for key in ("uri", "versionId", "sha256"))
    if not isinstance(uri, str) or not all(
        value is None or isinstance(value, str) for value in (version_id, sha256)
    ):
        raise SourceUnavailable(f"model source file {path} needs a string 'uri'")
    return ModelLocation(uri, version_id, sha256)


@dataclass(frozen=True)
class Upload:
    uri: str
    etag: str | None
    version_id: str | None
    sha256: str


def upload(data: bytes, location: S3Location, *, content_type: str) -> Upload:
    """PUT a model file with its sha256 recorded as object metadata."""
    from botocore.exceptions import BotoCoreError, ClientError

    digest = sha256_hex(data)
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
