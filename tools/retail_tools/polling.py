"""Waiting until something is true: the one poll loop of the tools, the tests, the demo and the
benchmarks, and the probe most of them poll (does a URL answer 200?).

``wait_until`` calls a probe until it returns something true and returns that, or raises
``Timeout`` (a ``TimeoutError`` that says what was awaited and what the probe said last). Each
caller turns a timeout into its own words: a ``ClusterError`` naming a log, a test failure with
the operator's log tail, a demo error.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(TimeoutError):
    """The probe never returned anything true in time; ``last`` is what it returned last."""

    def __init__(self, what: str, seconds: float, last: object) -> None:
        super().__init__(f"timed out after {seconds:.0f}s waiting for {what} (last: {last!r})")
        self.what = what
        self.seconds = seconds
        self.last = last


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str = "a condition",
    interval: float = 0.25,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something true; that value.
    Exceptions of the ``ignore`` types count as "not yet"; any other one ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        last: T | Exception | None
        try:
            last = probe()
        except ignore as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise Timeout(what, timeout, last)
        time.sleep(interval)


def answers(url: str, *, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> bool:
    """True if ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False
