"""The UBJSON structure check accepts well-formed documents and nothing else."""

from __future__ import annotations

import pytest

from retail_serving import ubjson
from retail_serving.errors import ModelFormatError
from tests.unit.serving.documents import GOOD


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
