"""``/readyz`` on the metrics port: 503 until the children are listed, 200 after; the metrics
are served beside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from retail_operator import metrics


def _get(path: str) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    answered: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        answered.append(status)

    body = b"".join(metrics.app(environ, start_response))
    return answered[0], body


@pytest.fixture(autouse=True)
def not_ready() -> Iterator[None]:
    metrics.READY.clear()
    yield
    metrics.READY.clear()


def test_not_ready_until_the_children_are_listed() -> None:
    status, body = _get("/readyz")
    assert status.startswith("503")
    assert b"not listed" in body


def test_ready_once_listed() -> None:
    metrics.READY.set()
    status, _ = _get("/readyz")
    assert status.startswith("200")


def test_the_metrics_are_served_beside_it() -> None:
    status, body = _get("/metrics")
    assert status.startswith("200")
    assert b"retail_operator_leader" in body
