"""Reading one pod's /metrics over HTTP (a local server stands in for the pod)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from retail_operator.canary.evidence import PodReading
from retail_operator.canary.scraping import METRICS_LIMIT, PodMetrics

ONE_REQUEST = (
    "# TYPE retail_http_requests_total counter\n"
    'retail_http_requests_total{route="/predict",method="POST",status="200"} 1.0\n'
)


@asynccontextmanager
async def pod_answering(body: Callable[[], bytes]) -> AsyncIterator[int]:
    """A server on loopback answering /metrics with ``body()``; its port."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=body(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listening).start()
    try:
        yield int(listening.getsockname()[1])
    finally:
        await runner.cleanup()


def read(body: Callable[[], bytes]) -> PodReading | None:
    async def scenario() -> PodReading | None:
        async with pod_answering(body) as port:
            reader = PodMetrics(kube=None, port=port)  # type: ignore[arg-type]  # _read only
            try:
                return await reader._read("127.0.0.1")
            finally:
                await reader.close()

    return asyncio.run(scenario())


def test_a_pods_metrics_are_read() -> None:
    sample = read(lambda: ONE_REQUEST.encode())
    assert sample is not None and sample.counts.requests == 1.0


def test_an_answer_over_the_limit_is_left_out_unread() -> None:
    padding = b"# " + b"x" * METRICS_LIMIT + b"\n"  # a comment: valid text, only too long
    assert read(lambda: ONE_REQUEST.encode() + padding) is None
