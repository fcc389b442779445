"""Run the predictor process: ``python -m retail_serving`` in the image, ``retailctl serve``
for people.

Both read the same ``ServingSettings`` from the environment and run uvicorn with the same
options; this module is the predictor's only entry point, and it imports nothing outside
``retail_serving`` and the shared contract, so the serving image needs no operator or tooling
code.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from retail_serving.settings import ServingSettings

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
# How long uvicorn lets in-flight requests finish after SIGTERM (the pod's termination grace
# period must be longer; the operator renders it so).
GRACEFUL_SHUTDOWN_SECONDS = 10


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
    import uvicorn

    from retail_serving.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    # botocore's debug log prints each request's headers: the access key ID and the session
    # token (IRSA's temporary credentials). Credentials never reach the log, at any level.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
    app = create_app(settings)
    if settings.gc_tuning:
        tune_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # per-request logging costs more than a prediction; see /metrics
        # Nothing here reads the client's address, so X-Forwarded-* headers are not trusted
        # from anyone, and answers carry no Server banner naming the software. Each is a layer
        # less per request: together 1.5-3 % more requests/s (docs/performance.md).
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


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
