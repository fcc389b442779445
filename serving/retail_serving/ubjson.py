"""A structural check of UBJSON documents, run before XGBoost is allowed to parse one.

XGBoost's UBJSON reader trusts the lengths it reads: a truncated or corrupted file can make it
read past its buffer and take the whole process down (observed with xgboost 3.2 on a model
cut short by a few bytes). A reloading server must survive any bytes an upload can contain,
so ``check`` walks the document first and insists that every marker is known, every length
is non-negative and in bounds, containers nest sanely and the document ends exactly where the
data does. It does not build any values, and typed arrays (where the trees live) are skipped
in one step, so it costs tens of milliseconds for a multi-megabyte model.
"""

from __future__ import annotations

import struct

from retail_serving.errors import ModelFormatError

MAX_DEPTH = 64
INTEGERS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}
FIXED_SIZES = {
    **{marker: struct.calcsize(layout) for marker, layout in INTEGERS.items()},
    ord("d"): 4,
    ord("D"): 8,
    ord("C"): 1,
    ord("Z"): 0,
    ord("T"): 0,
    ord("F"): 0,
}
STRINGS = {ord("S"), ord("H")}
ARRAY_OPEN, ARRAY_CLOSE = ord("["), ord("]")
OBJECT_OPEN, OBJECT_CLOSE = ord("{"), ord("}")
TYPE_MARKER, COUNT_MARKER, NO_OP = ord("$"), ord("#"), ord("N")


class _Walker:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def fail(self, problem: str) -> ModelFormatError:
        where = f"at byte {self.position}"
        return ModelFormatError(f"model file is not valid UBJSON: {problem} {where}")

    def skip(self, size: int) -> None:
        if size < 0 or self.position + size > len(self.data):
            raise self.fail("truncated or impossible length")
        self.position += size

    def marker(self) -> int:
        if self.position >= len(self.data):
            raise self.fail("unexpected end")
        value = self.data[self.position]
        self.position += 1
        return value

    def peek(self) -> int:
        if self.position >= len(self.data):
            raise self.fail("unexpected end")
        return self.data[self.position]

    def length(self) -> int:
        marker = self.marker()
        layout = INTEGERS.get(marker)
        if layout is None:
            raise self.fail(f"length with non-integer marker {chr(marker)!r}")
        start = self.position
        self.skip(struct.calcsize(layout))
        (value,) = struct.unpack_from(layout, self.data, start)
        if value < 0:
            raise self.fail("negative length")
        return int(value)

    def value(self, marker: int, depth: int) -> None:
        if marker in FIXED_SIZES:
            self.skip(FIXED_SIZES[marker])
        elif marker in STRINGS:
            self.skip(self.length())
        elif marker in (ARRAY_OPEN, OBJECT_OPEN):
            self.container(marker == OBJECT_OPEN, depth + 1)
        else:
            raise self.fail(f"unknown marker {marker!r}")

    def container(self, is_object: bool, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep")
        item_type: int | None = None
        if self.peek() == TYPE_MARKER:
            self.position += 1
            item_type = self.marker()
            if self.peek() != COUNT_MARKER:
                raise self.fail("typed container without a count")
        if self.peek() == COUNT_MARKER:
            self.position += 1
            self.counted(is_object, item_type, self.length(), depth)
            return
        close = OBJECT_CLOSE if is_object else ARRAY_CLOSE
        while True:
            if self.peek() == close:
                self.position += 1
                return
            if self.peek() == NO_OP:
                self.position += 1
                continue
            if is_object:
                self.skip(self.length())
            self.value(self.marker(), depth)

    def counted(self, is_object: bool, item_type: int | None, count: int, depth: int) -> None:
        if not is_object and item_type in FIXED_SIZES:
            self.skip(count * FIXED_SIZES[item_type])
            return
        if count > len(self.data) - self.position:
            raise self.fail("count larger than the rest of the file")
        for _ in range(count):
            if is_object:
                self.skip(self.length())
            self.value(self.marker() if item_type is None else item_type, depth)


def check(data: bytes) -> None:
    """Raise ``ModelFormatError`` unless ``data`` is one complete, well-formed UBJSON object."""
    walker = _Walker(data)
    if walker.marker() != OBJECT_OPEN:
        raise walker.fail("the document is not an object")
    walker.container(True, 1)
    if walker.position != len(data):
        raise walker.fail("trailing bytes after the document")
