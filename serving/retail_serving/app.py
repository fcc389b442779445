"""The predictor's ASGI apps: wiring, lifespan (model polling), request metrics, admission.

``create_apps`` builds everything from ``ServingSettings``: the model registry, the inference
engine and the metrics (``Services``), shared by the prediction routes (``hotpath``), the
FastAPI app (``routes``, through ``app.state.services``) and the metrics port's app
(``admin``). One plain Starlette ``Router``, with
no middleware of its own, routes every request: the three prediction POSTs first, then the
FastAPI app mounted for everything else. Measured side by side (docs/performance.md),
FastAPI's own stack (its error and exception middlewares, the ``Request`` around each call)
cost 45–60 µs more CPU per prediction than this router, on requests of about 105 µs in all,
and this router a few µs more than a hand-written dispatcher: so the prediction routes go
through Starlette's router and nothing else. The prediction routes count and time their own
requests; request metrics wrap the FastAPI app for every other request, so every request is
counted once, and the prediction POSTs pass through no middleware at all.

Around the router, ``admission.Admission`` bounds the requests in flight (probes aside).
The lifespan loads the model once before traffic is accepted (a failure leaves the app up
but not ready) and then polls for new versions every ``reload_interval_seconds``, in a worker
thread so that downloads and parsing never hold up the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from fastapi import FastAPI
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retail_contract.source import ModelSource
from retail_serving import routes
from retail_serving.admin import create_admin
from retail_serving.admission import Admission, BodyBudget
from retail_serving.hotpath import prediction_routes
from retail_serving.inference import InferenceEngine
from retail_serving.memory import ModelLimit, cgroup_memory_limit, limit_for
from retail_serving.metrics import ServingMetrics
from retail_serving.payloads import BatchParser
from retail_serving.registry import ModelRegistry
from retail_serving.services import Services
from retail_serving.settings import ServingSettings
from retail_serving.storage import read_source_file

log = logging.getLogger("retail_serving")


class RequestMetrics:
    """Pure ASGI middleware (no per-request task or body copy) counting and timing the
    requests of the app it wraps. The prediction POSTs count themselves (``hotpath``), so
    this wraps the FastAPI app only: one layer less on the requests that are most of the
    traffic."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            # A path no route matched is left with the mount it came through as its route.
            route = scope.get("route")
            path = "unmatched" if route is None or isinstance(route, Mount) else route.path
            self.metrics.answered(path, scope["method"], status, time.perf_counter() - started)


async def _poll_forever(registry: ModelRegistry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(registry.poll)
        except Exception:  # the poller must outlive any surprise; the model keeps serving
            log.exception("model poll failed unexpectedly")


def locator(settings: ServingSettings) -> Callable[[], ModelSource]:
    """What the registry asks on every poll for the model's source: the mounted document
    (re-read each time, so pins change at run time) or the fixed ``MODEL_URI``."""
    if settings.model_source_file is not None:
        return partial(read_source_file, settings.model_source_file)
    assert settings.model_uri is not None  # ServingSettings requires exactly one of the two
    keys = (settings.model_trusted_keys,) if settings.model_trusted_keys else ()
    fixed = ModelSource(
        settings.model_uri, settings.model_version_id, settings.model_sha256, trusted_keys=keys
    )
    return lambda: fixed


@dataclass(frozen=True)
class Apps:
    """The predictor's two ASGI apps, over the same ``Services``: ``api`` for the API port
    (with the lifespan that loads and polls the model), ``admin`` for the metrics port."""

    api: ASGIApp
    admin: ASGIApp
    metrics: ServingMetrics  # the server counts its read timeouts here


def model_limit(settings: ServingSettings) -> ModelLimit:
    """The largest model this process may load (``memory``), said once in the log."""
    memory = settings.memory_limit_bytes or cgroup_memory_limit()
    limit = limit_for(settings.max_model_bytes, memory)
    log.info("models up to %s bytes (%s)", f"{limit.bytes:,}", limit.rule)
    return limit


def create_apps(settings: ServingSettings | None = None) -> Apps:
    """The API app (one router, which sends the prediction POSTs to their routes and
    everything else to the FastAPI app, inside request metrics) and the metrics port's app."""
    settings = settings or ServingSettings()  # read from the environment
    metrics = ServingMetrics()
    registry = ModelRegistry(
        locator(settings),
        metrics,
        require_recorded_sha256=settings.require_sha256_metadata,
        require_signature=settings.require_model_signature,
        nthread=settings.predict_threads,
        model_limit=model_limit(settings),
    )
    engine = InferenceEngine(
        metrics,
        inline_max_rows=settings.inline_predict_max_rows,
        microbatch=settings.microbatch,
        microbatch_max_rows=settings.microbatch_max_rows,
        microbatch_max_wait=settings.microbatch_max_wait_ms / 1000,
    )
    bodies = BodyBudget(settings.max_body_bytes_in_flight, metrics.shed)
    parser = BatchParser(settings.max_batch_rows)
    services = Services(settings, registry, engine, metrics, parser, bodies)

    @asynccontextmanager
    async def lifespan(app: Router) -> AsyncIterator[None]:
        await asyncio.to_thread(registry.poll)
        poller = asyncio.create_task(_poll_forever(registry, settings.reload_interval_seconds))
        try:
            yield
        finally:
            poller.cancel()
            engine.close()

    api = FastAPI(
        title="RetailModel predictor",
        summary="Price-sensitivity predictions from a hot-reloaded XGBoost model.",
    )
    api.state.services = services
    predictions = prediction_routes(services)
    routes.install(api, predictions)
    router = Router([*predictions, Mount("", RequestMetrics(api, metrics))], lifespan=lifespan)
    return Apps(
        api=Admission(router, settings.max_requests_in_flight, metrics.shed),
        admin=create_admin(services),
        metrics=metrics,
    )
