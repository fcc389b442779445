"""Run the predictor process: ``python -m retail_serving`` in the image, ``retailctl serve``
for people.

Both read the same ``ServingSettings`` from the environment and run uvicorn with the same
options: one server on the API port and one on the metrics port (``METRICS_PORT``), in one
event loop. This module is the predictor's only entry point, and it imports nothing outside
``retail_serving`` and the shared contract, so the serving image needs no operator or tooling
code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from retail_serving.settings import ServingSettings

if TYPE_CHECKING:
    import uvicorn

    from retail_serving.app import Apps

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
# How long uvicorn lets in-flight requests finish after SIGTERM (the pod's termination grace
# period must be longer; the operator renders it so).
GRACEFUL_SHUTDOWN_SECONDS = 10
STARTUP_FAILURE = 3  # uvicorn's exit status when a server cannot start (a port in use)


# Python's cyclic collector, tuned for a server whose heap is mostly long-lived (modules, the
# app, the model) and whose requests allocate many short-lived objects: a young collection every
# 50,000 net allocations instead of 700; the older generations keep their default ratios.
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    """Freeze what is alive at start-up (the collector never scans it again) and set
    ``GC_THRESHOLDS`` (``GC_TUNING=false``: Python's defaults). Measured side by side at 64
    connections on one core in bench/RESULTS.md ("Garbage collection"). Nothing is left
    uncollected: objects made after start-up (each request's, a reloaded model's) are
    collected as before, only in larger batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class SettingsError(ValueError):
    """The environment does not describe a servable model; the message is one line."""


def load_settings(model_uri: str | None = None) -> ServingSettings:
    """The settings from the environment, with ``model_uri`` (if given) as ``MODEL_URI``."""
    if model_uri is not None:
        os.environ["MODEL_URI"] = model_uri
    try:
        return ServingSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        raise SettingsError(f"invalid serving settings: {problems}") from None


def run(
    settings: ServingSettings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = "info",
) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and stop."""
    from retail_serving.app import create_apps

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    # botocore's debug log prints each request's headers: the access key ID and the session
    # token (IRSA's temporary credentials). Credentials never reach the log, at any level.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
    apps = create_apps(settings)
    if settings.gc_tuning:
        tune_gc()
    api, admin = configs(apps, settings, host=host, port=port, log_level=log_level)
    server = _make_server(api, admin)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def configs(
    apps: Apps, settings: ServingSettings, *, host: str, port: int, log_level: str
) -> tuple[uvicorn.Config, uvicorn.Config]:
    """uvicorn's settings for the API port and for the metrics port."""
    import uvicorn

    from retail_serving.connections import guarded_protocol

    common: dict[str, Any] = {
        "host": host,
        # Header and body read deadlines, which uvicorn lacks (``connections``).
        "http": guarded_protocol(
            settings.request_header_timeout_seconds,
            settings.request_body_timeout_seconds,
            apps.metrics.timed_out,
        ),
        "log_level": log_level,
        "access_log": False,  # per-request logging costs more than a prediction; see /metrics
        # Nothing here reads the client's address, so X-Forwarded-* headers are not trusted
        # from anyone, and answers carry no Server banner naming the software. Each is a
        # layer less per request: together 1.5-3 % more requests/s (docs/performance.md).
        "proxy_headers": False,
        "server_header": False,
    }
    api = uvicorn.Config(
        apps.api, port=port, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, **common
    )
    # The model is loaded and polled by the API app's lifespan; this app only reads it.
    admin = uvicorn.Config(apps.admin, port=settings.metrics_port, lifespan="off", **common)
    return api, admin


def _make_server(api: uvicorn.Config, admin: uvicorn.Config) -> uvicorn.Server:
    """The API port's server, which runs the metrics port's beside it in the same event loop:
    started once the API's is up (the model loaded), stopped after the API's has drained its
    requests, so scrapes are answered throughout. Signals are the API server's alone. The
    metrics port is bound here, first, so a port in use is one error line and exit status 3
    before any model is loaded."""
    import uvicorn

    from retail_serving.connections import enforce

    class MetricsServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    class PredictorServer(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.metrics = MetricsServer(admin)
            self.metrics_socket = admin.bind_socket()
            self.tasks: tuple[asyncio.Task[None], ...] = ()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.tasks = (
                asyncio.create_task(self.metrics.serve([self.metrics_socket])),
                asyncio.create_task(enforce([self.server_state, self.metrics.server_state])),
            )

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            self.metrics.should_exit = True
            if self.tasks:
                serving_metrics, deadlines = self.tasks
                deadlines.cancel()
                await serving_metrics

    return PredictorServer(api)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m retail_serving [--model-uri URI] [--host H] [--port P] [--log-level L]``."""
    parser = argparse.ArgumentParser(
        prog="python -m retail_serving",
        description="Serve predictions from a model file, reloading it when the object changes.",
    )
    parser.add_argument("--model-uri", help="s3://bucket/key or a local path (default: $MODEL_URI)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="info")
    arguments = parser.parse_args(argv)
    try:
        settings = load_settings(arguments.model_uri)
    except SettingsError as error:
        print(f"retail_serving: error: {error}", file=sys.stderr)
        sys.exit(2)
    run(settings, host=arguments.host, port=arguments.port, log_level=arguments.log_level)
