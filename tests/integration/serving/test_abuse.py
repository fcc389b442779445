"""Clients that hold the predictor's resources, against a real ``retailctl serve`` over raw
sockets on 127.0.0.1: headers trickled a byte at a time (slowloris), a connection that sends
nothing, a body that stalls, more requests in flight than the bound, more body bytes than the
budget. Each is cut off or turned away (counted in ``/metrics``), and the predictor keeps
answering everyone else. Deadlines are asserted with generous bounds: what fails without the
defence is a connection still open, or an answer never sent, long after the deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from retail_serving.payloads import EXAMPLE

from .conftest import PredictorProcess, wait_for

Start = Callable[..., PredictorProcess]
Versions = Callable[[str], bytes]
DEADLINE = 1  # seconds, for headers and bodies where a test is about them
GENEROUS = 15.0  # how long a test waits for a deadline of DEADLINE s to act
STALLING = {"REQUEST_BODY_TIMEOUT_SECONDS": "60"}  # a body may stall for longer than a test


@pytest.fixture
def model_file(tmp_path: Path, model_version: Versions) -> str:
    model = tmp_path / "model.ubj"
    model.write_bytes(model_version("one"))
    return str(model)


def serving(start_predictor: Start, model_file: str, **env: str) -> PredictorProcess:
    predictor = start_predictor(model_file, env)
    wait_for(lambda: predictor.serving("one"), "model one")
    return predictor


def connect(predictor: PredictorProcess) -> socket.socket:
    address = urlsplit(predictor.url)
    connection = socket.create_connection((address.hostname, address.port), timeout=GENEROUS)
    return connection


def request_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: predictor\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def closed_by_server(connection: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``connection`` within ``within`` seconds; None
    if it was still open then."""
    deadline = time.monotonic() + within
    received = b""
    while time.monotonic() < deadline:
        connection.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


@contextmanager
def held_requests(predictor: PredictorProcess, count: int, body: bytes) -> Iterator[None]:
    """``count`` /predict requests whose headers are in and whose body stalls after
    ``body``: in flight until the block ends."""
    connections = [connect(predictor) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(request_head("/predict", len(body) + 100) + body)
        yield
    finally:
        for connection in connections:
            connection.close()


def predict_answers(predictor: PredictorProcess, status: str) -> float:
    """The /predict requests the predictor counted with ``status``."""
    return predictor.metric(
        "retail_http_requests_total", method="POST", route="/predict", status=status
    )


def still_answers(predictor: PredictorProcess) -> None:
    assert predictor.post("/predict", EXAMPLE).status_code == 200
    assert predictor.get("/ready").status_code == 200


def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_deadline(
    start_predictor: Start, model_file: str
) -> None:
    predictor = serving(start_predictor, model_file, REQUEST_HEADER_TIMEOUT_SECONDS=str(DEADLINE))
    started = time.monotonic()
    cut_off = False
    with closing(connect(predictor)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: predictor\r\n")
        for byte in b"x-slowloris: " + b"a" * 200:  # one byte every 0.1 s: 20 s in all
            try:
                connection.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            if closed_by_server(connection, 0.1) is not None:
                cut_off = True
                break
    assert cut_off, "the trickled headers were still accepted after 20 s"
    assert time.monotonic() - started < GENEROUS
    assert predictor.metric("retail_http_read_timeouts_total", phase="headers") == 1
    still_answers(predictor)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    start_predictor: Start, model_file: str
) -> None:
    predictor = serving(start_predictor, model_file, REQUEST_HEADER_TIMEOUT_SECONDS=str(DEADLINE))
    with closing(connect(predictor)) as connection:
        assert closed_by_server(connection, GENEROUS) == b""
    assert predictor.metric("retail_http_read_timeouts_total", phase="headers") == 1


def test_a_stalled_body_is_answered_408_and_its_connection_closed(
    start_predictor: Start, model_file: str
) -> None:
    predictor = serving(start_predictor, model_file, REQUEST_BODY_TIMEOUT_SECONDS=str(DEADLINE))
    with closing(connect(predictor)) as connection:
        connection.sendall(request_head("/predict", 1_000_000) + b'{"BASKET_SIZE": "M", ')
        answer = closed_by_server(connection, GENEROUS)
    assert answer is not None, "the stalled body was still being waited for"
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"did not arrive within 1 s" in answer
    assert predictor.metric("retail_http_read_timeouts_total", phase="body") == 1
    # The route counts its request as the client's failure (4xx), never the model's (5xx).
    assert predict_answers(predictor, "400") == 1
    still_answers(predictor)


def test_a_request_past_the_in_flight_bound_is_503_with_retry_after_and_counted(
    start_predictor: Start, model_file: str
) -> None:
    predictor = serving(start_predictor, model_file, MAX_REQUESTS_IN_FLIGHT="4", **STALLING)
    with held_requests(predictor, 4, b"{"):
        wait_for(
            lambda: predictor.post("/predict", EXAMPLE).status_code == 503,
            "a fifth request to be turned away",
        )
        refused = predictor.post("/v2/models/price-sensitivity/infer", {"inputs": []})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "4 requests in flight" in refused.json()["detail"]
        # The probes are never turned away: a busy pod is neither dead nor to be unlisted.
        for probe in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
            assert predictor.get(probe).status_code == 200, probe
        assert predictor.get_admin("/metrics").status_code == 200  # nor the metrics port
        shed = predictor.metric("retail_http_shed_total", reason="in_flight")
        assert shed >= 2
        # Shed requests say nothing of the model: no 503 under a prediction route.
        assert predict_answers(predictor, "503") == 0
    wait_for(lambda: predictor.post("/predict", EXAMPLE).status_code == 200, "room again")


def test_bodies_past_the_byte_budget_are_503_with_retry_after_and_counted(
    start_predictor: Start, model_file: str
) -> None:
    predictor = serving(
        start_predictor,
        model_file,
        MAX_BODY_BYTES="16384",
        MAX_BODY_BYTES_IN_FLIGHT="20000",
        **STALLING,
    )
    assert predictor.post("/predict/batch", [EXAMPLE] * 40).status_code == 200  # ~9 KB
    with held_requests(predictor, 1, b"[" + b" " * 14_000):
        wait_for(
            lambda: predictor.post("/predict/batch", [EXAMPLE] * 40).status_code == 503,
            "a body that does not fit beside the held one to be turned away",
        )
        refused = httpx.post(predictor.url + "/predict/batch", json=[EXAMPLE] * 40, timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert predictor.post("/predict", EXAMPLE).status_code == 200  # a small one fits
        assert predictor.metric("retail_http_shed_total", reason="body_bytes") >= 2
    wait_for(
        lambda: predictor.post("/predict/batch", [EXAMPLE] * 40).status_code == 200,
        "the held body's bytes to be given back",
    )
