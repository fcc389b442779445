"""Deadlines for what a client sends: a request's headers, and its body.

uvicorn bounds only the wait between requests on a kept-alive connection
(``timeout_keep_alive``). A connection that opens and sends nothing, or trickles its headers a
byte at a time (slowloris), or sends its headers and then stalls its body, is held for as long
as the client likes: its socket, its buffers and, once the headers are in, a request in flight
with the body read so far. Neither uvicorn nor h11/httptools offer a read deadline, and the
app never sees a request before its headers are complete, so this is done where the bytes
arrive: in uvicorn's HTTP protocol (``GuardedProtocol``, a subclass of its httptools one
passed as ``http=``), for both of the predictor's ports.

Each connection notes when it started waiting for headers (when it opened, or when the first
byte of its next request arrived) and for a body (when the headers were complete); one
``enforce`` task per server looks at every connection twice a second and closes those past
their deadline. Nothing is armed or cancelled per request: a request costs two attribute
writes, and the deadlines hold to within the sweep's half second. A body that misses its
deadline is answered 408 (unless an answer has begun) and its connection closed; the app,
reading the body, sees the client gone. Headers that miss theirs close the connection (there
is no request to answer yet), as nginx does. Both are counted in
``retail_http_read_timeouts_total{phase}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

SWEEP_SECONDS = 0.5
IDLE, HEADERS, BODY = 0, 1, 2  # what a connection is waiting for from its client


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines (``guarded_protocol``
    makes one with its deadlines and timeout counter)."""

    header_timeout = 0.0
    body_timeout = 0.0
    timed_out: Callable[[str], None] = staticmethod(lambda _phase: None)
    waiting = IDLE
    since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting, self.since = HEADERS, self.loop.time()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.waiting, self.since = HEADERS, self.loop.time()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.waiting, self.since = BODY, self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.waiting = IDLE

    def expire(self, now: float) -> None:
        """Close the connection if what it waits for is overdue at ``now``."""
        if self.waiting == HEADERS and now - self.since > self.header_timeout:
            self._give_up("headers", None)
        elif self.waiting == BODY and now - self.since > self.body_timeout:
            self._give_up("body", _request_timeout(self.body_timeout))

    def _give_up(self, phase: str, answer: bytes | None) -> None:
        self.waiting = IDLE
        self.timed_out(phase)
        cycle = self.cycle
        if answer is not None and cycle is not None and not cycle.response_started:
            # The app's own answer, if it still sends one, goes nowhere: this one is final.
            cycle.response_started = cycle.response_complete = True
            self.transport.write(answer)
        self.transport.close()


def _request_timeout(seconds: float) -> bytes:
    body = orjson.dumps({"detail": f"the request body did not arrive within {seconds:g} s"})
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


def guarded_protocol(
    header_timeout: float, body_timeout: float, timed_out: Callable[[str], None]
) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's ``http=``, with these deadlines (seconds), calling
    ``timed_out("headers" | "body")`` for each connection it closes."""
    settings: dict[str, Any] = {
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "timed_out": staticmethod(timed_out),
    }
    return type("GuardedProtocol", (GuardedProtocol,), settings)


async def enforce(servers: Iterable[ServerState]) -> None:
    """Close the connections of ``servers`` that are past a deadline, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        now = loop.time()
        for state in servers:
            for connection in list(state.connections):
                if isinstance(connection, GuardedProtocol):
                    connection.expire(now)
