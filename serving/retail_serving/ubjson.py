"""A structural check of UBJSON documents, run before XGBoost is allowed to parse one.

XGBoost's UBJSON reader trusts the lengths it reads: a truncated or corrupted file can make it
read past its buffer and take the whole process down (observed with xgboost 3.2 on a model
cut short by a few bytes). A reloading server must survive any bytes an upload can contain,
so ``check`` walks the document first and insists that every marker is known, every length
is non-negative and in bounds, containers nest sanely and the document ends exactly where the
data does. It builds no values and skips typed arrays (where the trees live) in one step.

The walk is one loop over an explicit stack, since a method call per value cost half its
time: about 12 ms of CPU for the benchmark's 3.5 MB model, against 23 ms for the recursive
walker it replaced. ``check_apart`` runs it in a long-lived helper process at a lower CPU
priority, so a reload neither holds the server's GIL for those milliseconds nor takes CPU
that requests want, and pays no fork (docs/performance.md has the measurements).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from retail_serving.errors import CheckInterrupted, ModelFormatError

MAX_DEPTH = 64
_LENGTHS = {
    ord(marker): (struct.calcsize(layout), struct.Struct(layout).unpack_from)
    for marker, layout in {"i": ">b", "U": ">B", "I": ">h", "l": ">i", "L": ">q"}.items()
}
LONG = ord("L")  # XGBoost writes every length as an int64
_unpack_long = struct.Struct(">q").unpack_from
FIXED_SIZES = {
    **{marker: size for marker, (size, _) in _LENGTHS.items()},
    ord("d"): 4,
    ord("D"): 8,
    ord("C"): 1,
    ord("Z"): 0,
    ord("T"): 0,
    ord("F"): 0,
}
STRINGS = frozenset({ord("S"), ord("H")})
ARRAY_OPEN, ARRAY_CLOSE = ord("["), ord("]")
OBJECT_OPEN, OBJECT_CLOSE = ord("{"), ord("}")
TYPE_MARKER, COUNT_MARKER, NO_OP = ord("$"), ord("#"), ord("N")
UNTIL_CLOSED = -1  # a container without a count: items until its closing marker
CHECK_PASSED, CHECK_REFUSED = 0, 1  # the helper's verdicts
MESSAGE_LIMIT = 4096  # a refusal's message is cut to this
CHECK_TIMEOUT_SECONDS = 60.0  # a 3.5 MB model takes about 12 ms of CPU
_LENGTH = struct.Struct(">Q")  # a document's length, ahead of it in the pipe
_ANSWER = struct.Struct(">BI")  # verdict, message length
# Below the server's threads, so that on a busy core the check mostly takes CPU they leave
# (a quarter of it when both want it); not the lowest (19), with which the 11 ms check took
# so long on a saturated core that the benchmark's 20 reloads in 10 s became 12.
HELPER_NICENESS = 5


def _fail(problem: str, position: int) -> ModelFormatError:
    return ModelFormatError(f"model file is not valid UBJSON: {problem} at byte {position}")


def check(data: bytes) -> None:
    """Raise ``ModelFormatError`` unless ``data`` is one complete, well-formed UBJSON object."""
    end = len(data)
    # Locals, not globals, in the loop: each global look-up costs a dict access per value.
    fixed_sizes, strings, unpack_long = FIXED_SIZES, STRINGS, _unpack_long

    def length(position: int) -> tuple[int, int]:
        """The length whose marker is at ``position``, and the position after it."""
        if position >= end:
            raise _fail("unexpected end", position)
        layout = _LENGTHS.get(data[position])
        if layout is None:
            raise _fail(f"length with non-integer marker {chr(data[position])!r}", position)
        size, unpack = layout
        if position + 1 + size > end:
            raise _fail("truncated or impossible length", position + 1)
        (value,) = unpack(data, position + 1)
        if value < 0:
            raise _fail("negative length", position + 1)
        return int(value), position + 1 + size

    if not end or data[0] != OBJECT_OPEN:
        raise _fail("the document is not an object", 0)
    # The open containers above the current one: (is an object, items left, item type).
    stack: list[tuple[bool, int, int | None]] = []
    is_object, remaining, item_type = True, UNTIL_CLOSED, None
    position, opened = 1, True
    while True:
        if opened:  # the header of the container just opened: [$type] [#count]
            opened = False
            if len(stack) >= MAX_DEPTH:
                raise _fail("nesting too deep", position)
            if position < end and data[position] == TYPE_MARKER:
                if position + 2 >= end:
                    raise _fail("unexpected end", position)
                item_type = data[position + 1]
                position += 2
                if data[position] != COUNT_MARKER:
                    raise _fail("typed container without a count", position)
            if position < end and data[position] == COUNT_MARKER:
                remaining, position = length(position + 1)
                if not is_object and item_type in fixed_sizes:  # a typed array: one step
                    position += remaining * fixed_sizes[item_type]
                    if position > end:
                        raise _fail("truncated or impossible length", position)
                    remaining = 0
                elif remaining > end - position:
                    raise _fail("count larger than the rest of the file", position)
        if remaining == 0:  # a counted container is complete
            if not stack:
                break
            is_object, remaining, item_type = stack.pop()
            continue
        if remaining == UNTIL_CLOSED:
            if position >= end:
                raise _fail("unexpected end", position)
            marker = data[position]
            if marker == (OBJECT_CLOSE if is_object else ARRAY_CLOSE):
                position += 1
                if not stack:
                    break
                is_object, remaining, item_type = stack.pop()
                continue
            if marker == NO_OP:
                position += 1
                continue
        else:
            remaining -= 1
        if is_object:  # the key: a length and that many bytes
            if position + 9 <= end and data[position] == LONG:
                (size,) = unpack_long(data, position + 1)
                if size < 0:
                    raise _fail("negative length", position + 1)
                position += 9 + size
            else:
                size, position = length(position)
                position += size
            if position > end:
                raise _fail("truncated or impossible length", position)
        if item_type is None:
            if position >= end:
                raise _fail("unexpected end", position)
            marker = data[position]
            position += 1
        else:
            marker = item_type
        fixed = fixed_sizes.get(marker)
        if fixed is not None:
            position += fixed
        elif marker in strings:
            size, position = length(position)
            position += size
        elif marker == ARRAY_OPEN or marker == OBJECT_OPEN:
            stack.append((is_object, remaining, item_type))
            is_object, remaining, item_type = marker == OBJECT_OPEN, UNTIL_CLOSED, None
            opened = True
            continue
        else:
            raise _fail(f"unknown marker {marker!r}", position - 1)
        if position > end:
            raise _fail("truncated or impossible length", position)
    if position != end:
        raise _fail("trailing bytes after the document", position)


class Helper:
    """The helper process that runs ``check``: started on first use, kept for the next."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = tuple(command)
        self.lock = threading.Lock()  # one document in the pipe at a time
        self.process: subprocess.Popen[bytes] | None = None
        self.owner = 0  # the pid that started it: a forked copy of this object starts its own

    def check(self, data: bytes, timeout: float) -> None:
        """Have the helper check ``data``; ``timeout`` bounds the whole exchange, sending the
        bytes included (a helper that stops reading must not hold the reload either)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                _send(process.stdin.fileno(), _LENGTH.pack(len(data)), deadline)
                _send(process.stdin.fileno(), data, deadline)
                status, message = _read_answer(process.stdout, deadline)
            except (OSError, ValueError, EOFError) as broke:  # TimeoutError is an OSError
                code = self._stop()
                why = "timed out" if isinstance(broke, TimeoutError) else f"exited {code}"
                raise CheckInterrupted(
                    f"model file check did not finish (its process {why})"
                ) from None
        if status != CHECK_PASSED:
            raise ModelFormatError(message)

    def _running(self) -> subprocess.Popen[bytes]:
        if self.owner != os.getpid():  # forked since: that helper's pipes are the parent's
            self.process = None
        elif self.process is not None and self.process.poll() is not None:
            self._stop()  # it died since the last check
        if self.process is None:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
            assert self.process.stdin is not None and self.process.stdout is not None
            # Written by _send and read by _receive only, each waiting with poll() first: a
            # blocking call after poll() could wait past the deadline (an answer cut short).
            os.set_blocking(self.process.stdin.fileno(), False)
            os.set_blocking(self.process.stdout.fileno(), False)
            self.owner = os.getpid()
        return self.process

    def _stop(self) -> int | None:
        """Kill and reap the helper (it is broken or gone); the next check starts another."""
        process, self.process = self.process, None
        if process is None:
            return None
        process.kill()
        code = process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return code

    def close(self) -> None:
        with self.lock:
            if self.process is not None and self.owner == os.getpid():
                self._stop()


def _wait(fd: int, events: int, deadline: float) -> None:
    """Until ``fd`` is ready for ``events`` or the deadline passes (then TimeoutError).
    ``poll``, not ``select``: a server with a thousand connections open when a helper is
    (re)started gives its pipes descriptors that ``select`` cannot watch."""
    poller = select.poll()
    poller.register(fd, events)
    milliseconds = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
    if not poller.poll(milliseconds):
        raise TimeoutError


def _send(fd: int, data: bytes, deadline: float) -> None:
    """Write all of ``data`` to the non-blocking ``fd`` by ``deadline``."""
    view = memoryview(data)
    while view:
        _wait(fd, select.POLLOUT, deadline)
        with contextlib.suppress(BlockingIOError):
            view = view[os.write(fd, view) :]


def _receive(fd: int, size: int, deadline: float) -> bytes:
    """Exactly ``size`` bytes from the non-blocking ``fd`` by ``deadline`` (EOFError if the
    other end closes first)."""
    received = bytearray()
    while len(received) < size:
        _wait(fd, select.POLLIN, deadline)
        try:
            chunk = os.read(fd, size - len(received))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError
        received += chunk
    return bytes(received)


def _read_answer(pipe: IO[bytes], deadline: float) -> tuple[int, str]:
    status, size = _ANSWER.unpack(_receive(pipe.fileno(), _ANSWER.size, deadline))
    return status, _receive(pipe.fileno(), size, deadline).decode(errors="replace")


HELPER = Helper([sys.executable, "-m", __name__])
atexit.register(HELPER.close)


def check_apart(data: bytes, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """``check`` in the helper process; raises what ``check`` would.

    The helper is a small Python process of its own (``python -m retail_serving.ubjson``),
    started on the first check and kept: this process only writes the bytes to its pipe and
    waits for the verdict with the GIL released, and nothing is forked per reload (a fork of
    a busy server costs it page-table copies and a copy-on-write fault for every page it
    then writes). A helper that dies or hangs gives no verdict: ``CheckInterrupted``, a
    temporary failure, and the next check starts a new one."""
    HELPER.check(data, timeout)


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The helper's loop: a length-prefixed document in, a status and a message out, until
    the server closes the pipe."""
    while header := source.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(header)
        status, message = CHECK_PASSED, b""
        try:
            check(source.read(size))
        except ModelFormatError as refusal:
            status, message = CHECK_REFUSED, str(refusal).encode()[:MESSAGE_LIMIT]
        sink.write(_ANSWER.pack(status, len(message)) + message)
        sink.flush()


if __name__ == "__main__":  # pragma: no cover - the helper process, started by check_apart
    os.nice(HELPER_NICENESS)
    serve(sys.stdin.buffer, sys.stdout.buffer)
