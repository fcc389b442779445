"""The operator's Prometheus metrics, served on ``/metrics`` (``RETAIL_OPERATOR_METRICS_PORT``,
default 8081) by every replica, leader or standby, and its readiness on ``/readyz`` there:
200 once the replica's children are listed (``READY``, set by ``handlers``), 503 before. A
replica that cannot list them cannot lead (``leadership``); not ready, it also holds a rolling
update, which then never replaces a working replica with one that cannot work.

What a person running the operator needs to see: how reconciles go (by result, and how long
they take), whether work is piling up (the queue and the backlog already due), how the AWS
calls go (by service and operation, errors by kind), how many RetailModels have their image
refused, how many scan exceptions end within a week, how many RetailModels drift (and the
drift windows judged), which replica leads, and how busy its event loop is (how late a short
sleep wakes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

RECONCILES = Counter(
    "retail_operator_reconciles", "Reconciles of a RetailModel, by result", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "retail_operator_reconcile_duration_seconds",
    "Time one reconcile took (checks, apply, status write)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_WAIT_SECONDS = Histogram(
    "retail_operator_queue_wait_seconds",
    "Time a RetailModel waited for a slot once due, by lane (change, retry, look)",
    ["lane"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
NEW_SEEN_SECONDS = Histogram(
    "retail_operator_new_retailmodel_seen_seconds",
    "How long after its creation a new RetailModel's event reached the operator (the watch's "
    "delay; the creation time has whole seconds)",
    buckets=(1, 2, 5, 10, 30, 60, 300, 600),
)
LOOP_LAG_SECONDS = Histogram(
    "retail_operator_event_loop_lag_seconds",
    "How much later than asked a short sleep on the operator's event loop woke: every "
    "reconcile, watch and kopf handler shares the loop, so this is what each of their steps "
    "waits when it is busy",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_DEPTH = Gauge("retail_operator_queue_depth", "RetailModels waiting for their next reconcile")
DUE_BACKLOG = Gauge(
    "retail_operator_due_backlog", "RetailModels whose reconcile is due but waits for a slot"
)
KUBE_CALLS = Counter(
    "retail_operator_kubernetes_calls",
    "Calls to the Kubernetes API (the Lease's included), by verb: get, apply, patch, ...",
    ["verb"],
)
AWS_CALLS = Counter(
    "retail_operator_aws_calls", "Calls to AWS APIs", ["service", "operation"]
)  # fmt: skip
AWS_ERRORS = Counter(
    "retail_operator_aws_errors", "Failed AWS calls, by error kind", ["service", "kind"]
)
IMAGES_BLOCKED = Gauge(
    "retail_operator_images_blocked", "RetailModels whose spec image the scan gate refuses"
)
EXCEPTIONS_EXPIRING = Gauge(
    "retail_operator_scan_exceptions_expiring",
    "Scan exceptions in use that end within 7 days",
)
DRIFTING = Gauge(
    "retail_operator_drifting",
    "RetailModels whose last drift window found drift (the Drift condition True)",
)
DRIFT_WINDOWS = Counter(
    "retail_operator_drift_windows",
    "Drift windows judged, by the Drift condition's reason",
    ["reason"],
)
LEADER = Gauge("retail_operator_leader", "1 while this replica holds the leader Lease")


class PerObject:
    """A gauge that is the sum of one value per RetailModel, kept right as objects change or go."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._values: dict[Hashable, float] = {}
        self._total = 0.0  # kept as values change: a sum over 10,000 on every reconcile was not

    def set(self, key: Hashable, value: float) -> None:
        self._total += value - self._values.get(key, 0.0)
        self._values[key] = value
        self._gauge.set(self._total)

    def forget(self, key: Hashable) -> None:
        self._total -= self._values.pop(key, 0.0)
        self._gauge.set(self._total)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values


blocked_images = PerObject(IMAGES_BLOCKED)
expiring_exceptions = PerObject(EXCEPTIONS_EXPIRING)
drifting = PerObject(DRIFTING)


READY = threading.Event()  # the children are listed (``handlers``): /readyz answers 200


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The WSGI app on the metrics port: ``/readyz``, and the metrics on every other path."""
    if environ.get("PATH_INFO") != "/readyz":
        answer: Iterable[bytes] = _METRICS(environ, start_response)
        return answer
    ready = READY.is_set()
    start_response(
        "200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")]
    )
    return [b"ready\n" if ready else b"not ready: the children are not listed yet\n"]


_METRICS = make_wsgi_app()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # a probe every few seconds is not news


def serve(port: int) -> None:
    """Serve ``/metrics`` and ``/readyz`` on all addresses (a pod's port) from a background
    thread."""
    if port:
        server = make_server("", port, app, _Server, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


async def measure_loop_lag(interval: float = 0.5) -> None:
    """Sleep ``interval`` over and over, observing how late each wake-up came."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        LOOP_LAG_SECONDS.observe(max(0.0, loop.time() - asked))
