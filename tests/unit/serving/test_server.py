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


def run_with(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> tuple[Any, Any]:
    """``server.run`` up to uvicorn; the configs of the API port's and the metrics port's
    servers it would have started."""
    import uvicorn

    started: list[Any] = []

    def run(self: Any, sockets: object = None) -> None:
        started.append(self)
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(uvicorn.Config, "bind_socket", lambda self: None)  # no port taken
    server.run(ServingSettings(model_uri="/nonexistent/model.ubj", **settings), port=8123)
    (api,) = started
    return api.config, api.metrics.config


def test_uvicorn_trusts_no_forwarded_headers_and_names_no_software(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for config in run_with(monkeypatch):
        assert config.proxy_headers is False
        assert config.server_header is False
        assert config.access_log is False


def test_metrics_answer_on_their_own_port_beside_the_api(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, admin = run_with(monkeypatch, metrics_port=9123)
    assert (api.port, admin.port) == (8123, 9123)
    assert api.host == admin.host
    assert admin.lifespan == "off"  # the API app's lifespan loads the model, once


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


def test_both_ports_read_requests_with_deadlines(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retail_serving.connections import GuardedProtocol

    for config in run_with(
        monkeypatch, request_header_timeout_seconds=3, request_body_timeout_seconds=7
    ):
        assert issubclass(config.http, GuardedProtocol)
        assert (config.http.header_timeout, config.http.body_timeout) == (3, 7)
