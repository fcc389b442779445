"""The UBJSON structure check accepts well-formed documents and nothing else."""

from __future__ import annotations

import os
import resource
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from retail_serving import ubjson
from retail_serving.errors import CheckInterrupted, ModelFormatError

# {"a": [1.0f, 2.0f] (typed, counted), "b": "hi", "c": {"d": true}}
GOOD = (
    b"{"
    b"U\x01a" + b"[$d#U\x02" + b"\x3f\x80\x00\x00" + b"\x40\x00\x00\x00"
    b"U\x01b" + b"SU\x02hi"
    b"U\x01c" + b"{U\x01dT}"
    b"}"
)

# A megabyte in one typed array, as a model's trees are: more than a pipe holds unread.
LARGE = b"{U\x01a[$d#L" + struct.pack(">q", 1 << 18) + bytes(4 << 18) + b"}"


def test_a_well_formed_document_passes() -> None:
    ubjson.check(GOOD)
    ubjson.check(b"{#U\x01U\x01kZ")  # counted object without a closing brace


@pytest.mark.parametrize(
    "data",
    [
        GOOD[:-1],  # missing close
        GOOD[:12],  # inside a typed array
        GOOD + b"}",  # trailing bytes
        b"[U\x01]",  # not an object
        b"{U\x01aX}",  # unknown marker
        b"{U\x01a[$d#i\xff}",  # negative count
        b"{U\x01a[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff}",  # absurd count
        b"{U\x01aSU\x09hi}",  # string longer than the file
        b"{d\x01\x02\x03\x04U}",  # key length with a non-integer marker
        b"{U\x01a" + b"[" * 100 + b"]" * 100 + b"}",  # nesting too deep
    ],
)
def test_malformed_documents_are_refused(data: bytes) -> None:
    with pytest.raises(ModelFormatError):
        ubjson.check(data)


def test_the_check_apart_accepts_what_the_check_accepts() -> None:
    ubjson.check_apart(GOOD)


def test_the_check_apart_refuses_with_the_checks_own_message() -> None:
    with pytest.raises(ModelFormatError) as direct:
        ubjson.check(GOOD[:12])
    with pytest.raises(ModelFormatError) as apart:
        ubjson.check_apart(GOOD[:12])
    assert str(apart.value) == str(direct.value)


def _helper_that(does: str) -> ubjson.Helper:
    """A helper process that reads a document's length and then does ``does``."""
    script = f"import os, sys, time; sys.stdin.buffer.read(8); {does}"
    return ubjson.Helper([sys.executable, "-c", script])


def test_a_helper_that_dies_gives_no_verdict() -> None:
    helper = _helper_that("os._exit(3)")
    with pytest.raises(CheckInterrupted, match=r"did not finish \(its process exited 3\)"):
        helper.check(GOOD, timeout=30)
    assert helper.process is None  # reaped; the next check starts another


def test_a_helper_that_hangs_gives_no_verdict_and_is_killed() -> None:
    helper = _helper_that("time.sleep(60)")
    with pytest.raises(CheckInterrupted, match="timed out"):
        helper.check(GOOD, timeout=0.5)
    assert helper.process is None


def test_a_helper_that_stops_reading_gives_no_verdict_within_the_timeout() -> None:
    ubjson.check(LARGE)  # well formed: only the helper's silence can fail it
    helper = _helper_that("time.sleep(30)")  # takes the length, never the document
    with pytest.raises(CheckInterrupted, match="timed out"):
        helper.check(LARGE, timeout=0.5)
    assert helper.process is None


PARTIAL_ANSWERS = {
    "half a header": b"\\x00\\x00",
    "a header and half its message": b"\\x01\\x00\\x00\\x00\\x10refused",
}


@pytest.mark.parametrize("answer", PARTIAL_ANSWERS.values(), ids=PARTIAL_ANSWERS.keys())
def test_a_helper_that_answers_in_part_and_stalls_gives_no_verdict_by_the_deadline(
    answer: bytes,
) -> None:
    helper = _helper_that(
        f"sys.stdout.buffer.write(b'{answer.decode()}'); sys.stdout.buffer.flush(); time.sleep(30)"
    )
    started = time.monotonic()
    with pytest.raises(CheckInterrupted, match="timed out"):
        helper.check(GOOD, timeout=0.5)
    # Generous: a read that blocked would wait for the helper's 30 s sleep to end.
    assert time.monotonic() - started < 15
    assert helper.process is None


def test_a_helper_started_with_a_thousand_descriptors_open_still_checks() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low to open 1,100 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # as a busy server's sockets
    helper = ubjson.Helper(ubjson.HELPER.command)
    try:
        helper.check(LARGE, timeout=30)
        assert helper.process is not None and helper.process.stdout is not None
        assert helper.process.stdout.fileno() > 1024  # past what select() can watch
        with pytest.raises(ModelFormatError, match="unexpected end"):
            helper.check(LARGE[:-1], timeout=30)
    finally:
        helper.close()
        for descriptor in held:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def helper() -> Iterator[ubjson.Helper]:
    """A helper like the one ``check_apart`` uses, with one check done (so it is running)."""
    started = ubjson.Helper(ubjson.HELPER.command)
    started.check(GOOD, timeout=30)
    yield started
    started.close()
    assert started.process is None


def _pid(helper: ubjson.Helper) -> int:
    assert helper.process is not None
    return helper.process.pid


def test_one_helper_serves_check_after_check_and_a_dead_one_is_replaced(
    helper: ubjson.Helper,
) -> None:
    first = _pid(helper)
    with pytest.raises(ModelFormatError, match="unexpected end"):
        helper.check(GOOD[:-1], timeout=30)
    helper.check(GOOD, timeout=30)
    assert _pid(helper) == first  # a refusal does not cost a new process
    assert helper.process is not None
    helper.process.kill()
    helper.process.wait()
    helper.check(GOOD, timeout=30)  # killed between checks: started again
    assert _pid(helper) != first


def test_a_forked_process_checks_with_a_helper_of_its_own(helper: ubjson.Helper) -> None:
    parents = _pid(helper)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        code = 1
        try:
            helper.check(GOOD, timeout=30)
            code = 0 if _pid(helper) != parents else 2
            helper.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    helper.check(GOOD, timeout=30)  # the parent's helper is still its own, and still works
    assert _pid(helper) == parents
