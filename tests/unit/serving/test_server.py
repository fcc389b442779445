"""The predictor's entry point: the uvicorn options it serves with, and Python's collector
tuned unless told not to."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from retail_serving import server
from retail_serving.settings import ServingSettings


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def run_with(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> dict[str, Any]:
    """``server.run`` up to uvicorn; the options it would have started uvicorn with."""
    import uvicorn

    options: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **kwargs: options.update(kwargs))
    monkeypatch.setattr("retail_serving.app.create_app", lambda _settings: object())
    server.run(ServingSettings(model_uri="/nonexistent/model.ubj", **settings))
    return options


def test_uvicorn_trusts_no_forwarded_headers_and_names_no_software(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = run_with(monkeypatch)
    assert options["proxy_headers"] is False
    assert options["server_header"] is False
    assert options["access_log"] is False


def test_the_server_freezes_start_up_objects_and_collects_less_often(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.unfreeze()
    run_with(monkeypatch)
    assert gc.get_threshold() == server.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


def test_gc_tuning_off_leaves_pythons_collector_alone(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    run_with(monkeypatch, gc_tuning=False)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
