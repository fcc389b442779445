"""The UBJSON structure check accepts well-formed documents and nothing else."""

from __future__ import annotations

import os
import signal

import pytest

from retail_serving import ubjson
from retail_serving.errors import ModelFormatError

# {"a": [1.0f, 2.0f] (typed, counted), "b": "hi", "c": {"d": true}}
GOOD = (
    b"{"
    b"U\x01a" + b"[$d#U\x02" + b"\x3f\x80\x00\x00" + b"\x40\x00\x00\x00"
    b"U\x01b" + b"SU\x02hi"
    b"U\x01c" + b"{U\x01dT}"
    b"}"
)


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


def test_a_check_that_dies_is_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    # The child inherits the patched check: a crash there must not pass as "well-formed".
    monkeypatch.setattr(ubjson, "check", lambda data: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(ModelFormatError, match="did not finish"):
        ubjson.check_apart(GOOD)
