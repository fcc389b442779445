"""A model file's bytes, held once while a model loads.

A reload used to hold a file several times at once: the downloaded bytes, a ``bytearray`` copy
for XGBoost, and the copy the structure check's helper received through a pipe. Now the bytes
are written, as they arrive, into an anonymous memory file (``memfd_create``), which is then
sealed against any change and mapped read-only: the digest is computed over the mapping, the
helper process maps the same pages (it is passed the descriptor, not the bytes;
``checker``), and XGBoost parses from the mapping (``model.load_booster``). Writing as the
bytes arrive also stops a download with no Content-Length at the limit. The pages count
against the pod's memory like any other (as shared memory), once; closing the ``ModelBytes``
frees them.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from collections.abc import Callable, Iterable
from types import TracebackType

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class ModelBytes:
    """The bytes of one model file in a sealed memory file: ``fd`` (for the helper) and
    ``view`` (a read-only memoryview over its mapping). A context manager: closing it
    unmaps and closes the file."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
        self.view = memoryview(self._mapping if self._mapping is not None else b"")

    @classmethod
    def receive(
        cls, chunks: Iterable[bytes], limit: int, too_large: Callable[[int], Exception]
    ) -> ModelBytes:
        """The bytes of ``chunks``, read no further than ``limit``: past it, the exception
        ``too_large(bytes read)``."""
        fd = os.memfd_create("model", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            size = 0
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise too_large(size)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            return cls(fd, size)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def of(cls, data: bytes) -> ModelBytes:
        """``data`` copied into a memory file (a model read whole, by the CLI or a test)."""
        return cls.receive([data], len(data), OverflowError)

    def __bytes__(self) -> bytes:
        return bytes(self.view)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.view.release()
        if self._mapping is not None:
            self._mapping.close()
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> ModelBytes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
