"""The structure check of a model file, run in a helper process before XGBoost parses it.

``check`` refuses anything but one well-formed document: UBJSON is walked (``ubjson.check``:
XGBoost's UBJSON reader can crash the process on a file cut short), JSON is parsed with orjson.
Neither runs in the server: ``check_apart`` hands the model's memory file to a long-lived
helper process (``python -m retail_serving.checker``, started on the first check, at a lower
CPU priority), so a reload neither holds the server's GIL for the walk nor puts a JSON
document's parse in the server's memory (orjson's objects take about eight times the file),
and nothing is forked per reload (a fork of a busy server costs it page-table copies and a
copy-on-write fault for every page it then writes). The helper is passed the memory file's
descriptor over a socket, not its bytes (``modelbytes``): it maps the same pages, so the bytes
are held once. It asks the kernel to kill it first when the pod runs out of memory, so a
document too large to check costs the check, not the server.

A helper that dies, hangs or answers in part gives no verdict by the deadline: the exchange
waits with ``poll()`` before every read and write (a blocking call after it could wait past
the deadline), the helper is killed and reaped, ``CheckInterrupted`` is raised (a temporary
failure: it says nothing of the bytes) and the next check starts another helper.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import mmap
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import orjson

from retail_serving import ubjson
from retail_serving.errors import CheckInterrupted, ModelFormatError
from retail_serving.modelbytes import ModelBytes

CHECK_PASSED, CHECK_REFUSED = 0, 1  # the helper's verdicts
MESSAGE_LIMIT = 4096  # a refusal's message is cut to this
CHECK_TIMEOUT_SECONDS = 60.0  # a 3.5 MB model takes about 12 ms of CPU
_LENGTH = struct.Struct(">Q")  # a document's length, sent with its memory file's descriptor
_ANSWER = struct.Struct(">BI")  # verdict, message length
# Below the server's threads, so that on a busy core the check mostly takes CPU they leave
# (a quarter of it when both want it); not the lowest (19), with which the 11 ms check took
# so long on a saturated core that the benchmark's 20 reloads in 10 s became 12.
HELPER_NICENESS = 5
OOM_SCORE_ADJ = 1000  # the first process the kernel kills when the pod is out of memory
JSON_SECOND = frozenset(b'"}')  # what follows a JSON object's '{' (or white space)


def is_json(data: memoryview) -> bool:
    """Whether a document that opens with '{' is JSON (else it is UBJSON, whose first key's
    length marker follows the brace)."""
    head = bytes(data[:4096])
    start = len(head) - len(head.lstrip())
    second = data[start + 1 : start + 2].tobytes()
    return second.isspace() or (len(second) == 1 and second[0] in JSON_SECOND)


def check(data: memoryview) -> None:
    """Raise ``ModelFormatError`` unless ``data`` is one well-formed JSON or UBJSON document."""
    if is_json(data):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ModelFormatError(f"model file is not valid JSON: {error}") from None
    else:
        ubjson.check(data)


class Helper:
    """The helper process that runs ``check``: started on first use, kept for the next."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = tuple(command)
        self.lock = threading.Lock()  # one document at a time
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None  # this side of the helper's socket
        self.owner = 0  # the pid that started it: a forked copy of this object starts its own

    def check(self, data: ModelBytes, timeout: float) -> None:
        """Have the helper check ``data``; ``timeout`` bounds the whole exchange."""
        deadline = time.monotonic() + timeout
        with self.lock:
            channel = self._running()
            try:
                _wait(channel.fileno(), select.POLLOUT, deadline)
                socket.send_fds(channel, [_LENGTH.pack(data.size)], [data.fd])
                status, message = _read_answer(channel.fileno(), deadline)
            except (OSError, ValueError, EOFError) as broke:  # TimeoutError is an OSError
                code = self._stop()
                why = "timed out" if isinstance(broke, TimeoutError) else f"exited {code}"
                raise CheckInterrupted(
                    f"model file check did not finish (its process {why})"
                ) from None
        if status != CHECK_PASSED:
            raise ModelFormatError(message)

    def _running(self) -> socket.socket:
        if self.owner != os.getpid():  # forked since: that helper's socket is the parent's
            self.process, self.channel = None, None
        elif self.process is not None and self.process.poll() is not None:
            self._stop()  # it died since the last check
        if self.process is None or self.channel is None:
            ours, theirs = socket.socketpair()
            with theirs:  # the helper's stdin and stdout, both ways
                self.process = subprocess.Popen(
                    self.command, stdin=theirs.fileno(), stdout=theirs.fileno(), close_fds=True
                )
            # Read and written after poll() only: a blocking call could wait past the deadline.
            ours.setblocking(False)
            self.channel = ours
            self.owner = os.getpid()
        return self.channel

    def _stop(self) -> int | None:
        """Kill and reap the helper (it is broken or gone); the next check starts another."""
        process, channel = self.process, self.channel
        self.process, self.channel = None, None
        if channel is not None:
            channel.close()
        if process is None:
            return None
        process.kill()
        return process.wait()

    def close(self) -> None:
        with self.lock:
            if self.process is not None and self.owner == os.getpid():
                self._stop()


def _wait(fd: int, events: int, deadline: float) -> None:
    """Until ``fd`` is ready for ``events`` or the deadline passes (then TimeoutError).
    ``poll``, not ``select``: a server with a thousand connections open when a helper is
    (re)started gives its socket a descriptor that ``select`` cannot watch."""
    poller = select.poll()
    poller.register(fd, events)
    milliseconds = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
    if not poller.poll(milliseconds):
        raise TimeoutError


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


def _read_answer(fd: int, deadline: float) -> tuple[int, str]:
    status, size = _ANSWER.unpack(_receive(fd, _ANSWER.size, deadline))
    return status, _receive(fd, size, deadline).decode(errors="replace")


HELPER = Helper([sys.executable, "-m", __name__])
atexit.register(HELPER.close)


def check_apart(data: ModelBytes, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """``check`` in the helper process; raises what ``check`` would, or ``CheckInterrupted``
    when the helper gives no verdict within ``timeout``."""
    HELPER.check(data, timeout)


def _verdict(fds: list[int], size: int) -> tuple[int, bytes]:
    if len(fds) != 1:
        return CHECK_REFUSED, b"model file check: no model file was passed"
    if size == 0:
        return CHECK_REFUSED, b"model file is empty"
    with mmap.mmap(fds[0], size, prot=mmap.PROT_READ) as mapping:
        view = memoryview(mapping)
        try:
            check(view)
        except ModelFormatError as refusal:
            return CHECK_REFUSED, str(refusal).encode()[:MESSAGE_LIMIT]
        finally:
            view.release()
    return CHECK_PASSED, b""


def serve(channel: socket.socket) -> None:
    """The helper's loop: a length and a memory file's descriptor in, a status and a message
    out, until the server closes its end."""
    while True:
        header, fds, _flags, _address = socket.recv_fds(channel, _LENGTH.size, 1)
        if not header:
            return
        try:
            status, message = _verdict(fds, _LENGTH.unpack(header)[0])
        finally:
            for fd in fds:
                os.close(fd)
        channel.sendall(_ANSWER.pack(status, len(message)) + message)


def _first_to_go() -> None:
    """Ask to be the process the kernel kills first when the pod's memory runs out (raising
    one's own score needs no privilege)."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as score:
        score.write(str(OOM_SCORE_ADJ))


if __name__ == "__main__":  # pragma: no cover - the helper process, started by check_apart
    os.nice(HELPER_NICENESS)
    _first_to_go()
    serve(socket.socket(fileno=sys.stdin.fileno()))
