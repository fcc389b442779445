"""Which model object to serve, and what a HEAD of it says: plain values, no I/O.

Shared by the storage adapters (which produce them) and the reload state machine (which
compares them), so that the state machine needs no storage code at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelLocation:
    """Where the model lives (``s3://bucket/key`` or a path), optionally pinned to one S3 object
    version and to a sha256 the bytes must have."""

    uri: str
    version_id: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ObjectVersion:
    """What a HEAD says about the model object; ``sha256`` is the digest recorded at upload."""

    etag: str | None
    version_id: str | None
    sha256: str | None = None
    location: ModelLocation | None = None  # which location this HEAD was made for

    @property
    def identity(self) -> tuple[ModelLocation | None, str | None, str | None]:
        """Two heads with the same identity describe the same bytes under the same rules."""
        return (self.location, self.version_id, self.etag)
