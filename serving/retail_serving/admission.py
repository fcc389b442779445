"""What the predictor takes on at once: requests in flight, and bytes of request bodies held.

Without a bound, a flood of requests queues without end (each waits longer than its client
will) and a flood of large bodies takes the pod's memory: sixteen MiB bodies, held while they
arrive, OOM a 1 GiB pod at about sixty. Two bounds, each answered with 503 and
``Retry-After`` (another replica, or this one a second later, will take the request) and
counted in ``retail_http_shed_total{reason}``:

* ``Admission``, around the API app: at most ``MAX_REQUESTS_IN_FLIGHT`` requests at once
  (``reason="in_flight"``). The probes (``/health``, ``/ready`` and their v2 forms) are never
  turned away: a busy pod is not a dead one, and a liveness probe refused under load would
  have the kubelet restart it, a readiness probe take every busy replica out of the Service
  at once.
* ``BodyBudget``, taken by ``http.read_body`` as a body arrives and given back when its
  request is answered: at most ``MAX_BODY_BYTES_IN_FLIGHT`` bytes of bodies held at once
  (``reason="body_bytes"``), whatever their number.

uvicorn's own ``limit_concurrency`` counts connections (idle keep-alive ones too) as well as
tasks, answers without ``Retry-After`` and counts nothing, so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

RETRY_AFTER_SECONDS = 1
RETRY_AFTER = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
PROBES = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})


class Overloaded(Exception):
    """The predictor is at one of its bounds; ``reason`` is the metric's label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BodyBudget:
    """Bytes of request bodies held at once, across requests (one event loop: no lock)."""

    def __init__(self, limit: int, shed: Callable[[str], None]) -> None:
        self.limit = limit
        self.held = 0
        self._shed = shed

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            self._shed("body_bytes")
            raise Overloaded(
                "body_bytes", f"{self.limit} bytes of request bodies are already being read"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


class Admission:
    """Pure ASGI middleware: at most ``limit`` requests in flight, probes aside."""

    def __init__(self, app: ASGIApp, limit: int, shed: Callable[[str], None]) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self._shed = shed
        self._refusal = orjson.dumps(
            {"detail": f"{limit} requests in flight; retry in {RETRY_AFTER_SECONDS} s"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self._shed("in_flight")
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._refusal)).encode()),
            RETRY_AFTER,
            # The body, if any, is left unread: the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self._refusal})
