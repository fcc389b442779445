"""The structure check runs apart, in a helper process: it checks UBJSON and JSON with the
same verdicts as in process, reads the model's memory file in place, and a helper that dies,
hangs or answers in part gives no verdict by its deadline (and is replaced)."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator

import pytest

from retail_serving import checker, ubjson
from retail_serving.errors import CheckInterrupted, ModelFormatError
from retail_serving.modelbytes import ModelBytes
from tests.unit.serving.documents import GOOD, LARGE


def held(data: bytes) -> ModelBytes:
    return ModelBytes.of(data)


@pytest.mark.parametrize(
    ("document", "is_json"),
    [(b'{"a": 1}', True), (b"  \n{ }", True), (b"{}", True), (GOOD, False), (LARGE, False)],
)
def test_a_document_is_told_json_or_ubjson_by_its_opening(document: bytes, is_json: bool) -> None:
    assert checker.is_json(memoryview(document)) is is_json


def test_json_is_checked_apart_with_the_same_verdicts() -> None:
    checker.check_apart(held(b' {"learner": {"attributes": {}}, "version": [3, 2, 0]}'))
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        checker.check_apart(held(b'{"learner": {"attributes": {}'))


def test_the_helper_checks_the_memory_file_it_is_passed() -> None:
    """It is passed a descriptor, not the bytes, and maps the file itself."""
    helper = checker.Helper(checker.HELPER.command)
    try:
        helper.check(held(LARGE), timeout=30)
        with pytest.raises(ModelFormatError, match="unexpected end"):
            helper.check(held(LARGE[:-1]), timeout=30)
    finally:
        helper.close()


def test_the_check_apart_accepts_what_the_check_accepts() -> None:
    checker.check_apart(held(GOOD))


def test_the_check_apart_refuses_with_the_checks_own_message() -> None:
    with pytest.raises(ModelFormatError) as direct:
        ubjson.check(GOOD[:12])
    with pytest.raises(ModelFormatError) as apart:
        checker.check_apart(held(GOOD[:12]))
    assert str(apart.value) == str(direct.value)


def _helper_that(does: str) -> checker.Helper:
    """A helper process that reads a document's length and then does ``does``."""
    script = f"import os, sys, time; sys.stdin.buffer.read(8); {does}"
    return checker.Helper([sys.executable, "-c", script])


def test_a_helper_that_dies_gives_no_verdict() -> None:
    helper = _helper_that("os._exit(3)")
    with pytest.raises(CheckInterrupted, match=r"did not finish \(its process exited 3\)"):
        helper.check(held(GOOD), timeout=30)
    assert helper.process is None  # reaped; the next check starts another


def test_a_helper_that_hangs_gives_no_verdict_and_is_killed() -> None:
    helper = _helper_that("time.sleep(60)")
    with pytest.raises(CheckInterrupted, match="timed out"):
        helper.check(held(GOOD), timeout=0.5)
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
        helper.check(held(GOOD), timeout=0.5)
    # Generous: a read that blocked would wait for the helper's 30 s sleep to end.
    assert time.monotonic() - started < 15
    assert helper.process is None


def test_a_helper_started_with_a_thousand_descriptors_open_still_checks() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low to open 1,100 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # as a busy server's sockets
    helper = checker.Helper(checker.HELPER.command)
    try:
        helper.check(held(LARGE), timeout=30)
        assert helper.channel is not None
        assert helper.channel.fileno() > 1024  # past what select() can watch
        with pytest.raises(ModelFormatError, match="unexpected end"):
            helper.check(held(LARGE[:-1]), timeout=30)
    finally:
        helper.close()
        for descriptor in opened:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def helper() -> Iterator[checker.Helper]:
    """A helper like the one ``check_apart`` uses, with one check done (so it is running)."""
    started = checker.Helper(checker.HELPER.command)
    started.check(held(GOOD), timeout=30)
    yield started
    started.close()
    assert started.process is None


def _pid(helper: checker.Helper) -> int:
    assert helper.process is not None
    return helper.process.pid


def test_one_helper_serves_check_after_check_and_a_dead_one_is_replaced(
    helper: checker.Helper,
) -> None:
    first = _pid(helper)
    with pytest.raises(ModelFormatError, match="unexpected end"):
        helper.check(held(GOOD[:-1]), timeout=30)
    helper.check(held(GOOD), timeout=30)
    assert _pid(helper) == first  # a refusal does not cost a new process
    assert helper.process is not None
    helper.process.kill()
    helper.process.wait()
    helper.check(held(GOOD), timeout=30)  # killed between checks: started again
    assert _pid(helper) != first


def test_a_forked_process_checks_with_a_helper_of_its_own(helper: checker.Helper) -> None:
    parents = _pid(helper)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        code = 1
        try:
            helper.check(held(GOOD), timeout=30)
            code = 0 if _pid(helper) != parents else 2
            helper.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    helper.check(held(GOOD), timeout=30)  # the parent's helper is still its own, and still works
    assert _pid(helper) == parents
