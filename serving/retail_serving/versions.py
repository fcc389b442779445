"""What a HEAD of the model object says: the identity of one version of the model file.

A plain value shared by the storage adapters (which produce it) and the reload state machine
(which compares it), so that the state machine needs no storage code at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectVersion:
    """What a HEAD says about the model object; ``sha256`` is the digest recorded at upload."""

    etag: str | None
    version_id: str | None
    sha256: str | None = None

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """Two heads with the same identity describe the same bytes."""
        return (self.version_id, self.etag)
