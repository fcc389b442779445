"""A fault-injecting HTTP proxy in front of the AWS stand-in.

Processes under test point ``AWS_ENDPOINT_URL`` at the proxy; it forwards every request to
moto unless a rule matches, in which case it answers as AWS does when it throttles, denies
access or is unreachable. Rules match ECR operations by their ``X-Amz-Target`` and S3 calls by
method and path, so a test can fail exactly one kind of call and watch the rest go through.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from retail_tools.standin import AwsStandIn

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    """Answer matching requests with ``status`` and ``body`` instead of forwarding them."""

    status: int
    body: bytes = b""
    content_type: str = "application/x-amz-json-1.1"
    target: str = ""  # substring of X-Amz-Target (JSON-protocol services such as ECR)
    method: str = ""  # and/or an HTTP method and path prefix (S3)
    path_prefix: str = ""
    drop: bool = False  # close the connection without answering (an unreachable endpoint)
    hits: int = 0

    def matches(self, method: str, path: str, target: str) -> bool:
        if self.target and self.target not in target:
            return False
        if self.method and self.method != method:
            return False
        return not (self.path_prefix and not path.startswith(self.path_prefix))


def ecr_error(operation: str, code: str, status: int = 400) -> Rule:
    return Rule(
        status,
        f'{{"__type":"{code}","message":"injected {code}"}}'.encode(),
        target=f".{operation}",
    )


def s3_error(method: str, path_prefix: str, code: str, status: int) -> Rule:
    body = (
        b""
        if method == "HEAD"
        else (f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode())
    )
    return Rule(status, body, "application/xml", method=method, path_prefix=path_prefix)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy.match(self.command, self.path, self.headers.get("X-Amz-Target", ""))
                if rule is not None and rule.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if rule is not None:
                    self.send_response(rule.status)
                    self.send_header("Content-Type", rule.content_type)
                    self.send_header("Content-Length", str(len(rule.body)))
                    self.send_header("x-amzn-RequestId", "injected-fault")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(rule.body)
                    return
                status, headers, payload = proxy.forward(
                    self.command, self.path, self.headers, body
                )
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                length = str(len(payload))
                if self.command == "HEAD":  # the length the GET would have, not the empty body's
                    length = next((v for k, v in headers if k.lower() == "content-length"), length)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def match(self, method: str, path: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, target):
                    rule.hits += 1
                    return rule
        return None

    def forward(
        self, method: str, path: str, headers: object, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}  # type: ignore[attr-defined]
            forwarded["Host"] = f"{self.upstream.hostname}:{self.upstream.port}"
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def inject(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def fault_proxy(aws_stand_in: AwsStandIn) -> Iterator[FaultProxy]:
    proxy = FaultProxy(aws_stand_in.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def faults(fault_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The proxy, with every rule a test injected cleared afterwards."""
    fault_proxy.clear()
    try:
        yield fault_proxy
    finally:
        fault_proxy.clear()
