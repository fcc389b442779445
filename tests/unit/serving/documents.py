"""UBJSON documents the structure check's tests share."""

from __future__ import annotations

import struct

# {"a": [1.0f, 2.0f] (typed, counted), "b": "hi", "c": {"d": true}}
GOOD = (
    b"{"
    b"U\x01a" + b"[$d#U\x02" + b"\x3f\x80\x00\x00" + b"\x40\x00\x00\x00"
    b"U\x01b" + b"SU\x02hi"
    b"U\x01c" + b"{U\x01dT}"
    b"}"
)

# A megabyte in one typed array, as a model's trees are.
LARGE = b"{U\x01a[$d#L" + struct.pack(">q", 1 << 18) + bytes(4 << 18) + b"}"
