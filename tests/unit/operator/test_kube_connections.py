"""A request's timeout covers the request, not the wait for a pooled connection: more calls at
once than the pool holds must queue, then each one gets its whole timeout."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from kubernetes.aio.client import Configuration

from retail_operator import kube
from retail_operator.errors import TemporaryError
from retail_operator.kube import KubeApi

ANSWER_SECONDS = 0.2
POOL = 2
CALLS = 10  # five rounds of the pool: 1 s of queueing, twice the timeout below


async def slow_config_map(request: web.Request) -> web.Response:
    await asyncio.sleep(ANSWER_SECONDS)
    return web.json_response({"kind": "ConfigMap", "metadata": {"name": "prices"}})


async def calls_that_succeed() -> int:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/shop/configmaps/prices", slow_config_map)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    configuration = Configuration(host=f"http://127.0.0.1:{port}")
    configuration.connection_pool_maxsize = POOL
    api = KubeApi(configuration)
    try:
        results = await asyncio.gather(
            *(api.get("v1", "ConfigMap", "shop", "prices") for _ in range(CALLS)),
            return_exceptions=True,
        )
    finally:
        await api.close()
        await runner.cleanup()
    assert all(isinstance(r, dict | TemporaryError) for r in results), results
    return sum(1 for result in results if isinstance(result, dict))


def test_calls_beyond_the_pool_wait_for_a_connection_without_timing_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT", 0.5)  # longer than one answer, not the queue
    assert asyncio.run(calls_that_succeed()) == CALLS
