"""What a HEAD of the model object says: a plain value, no I/O.

Shared by the storage adapters (which produce them) and the reload state machine (which
compares them), so that the state machine needs no storage code at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from retail_contract.source import ModelSource


@dataclass(frozen=True)
class ObjectVersion:
    """What a HEAD says about the model object; ``sha256`` is the digest recorded at upload."""

    etag: str | None
    version_id: str | None
    sha256: str | None = None
    location: ModelSource | None = None  # which location this HEAD was made for
    size: int | None = None  # bytes, as the HEAD reported them

    @property
    def identity(self) -> tuple[ModelSource | None, str | None, str | None]:
        """Two heads with the same identity describe the same bytes under the same rules."""
        return (self.location, self.version_id, self.etag)
