"""Predictor faults: S3 unreachable or throttling during a reload, and objects that must never be
served (truncated, the wrong feature schema).

Each test runs ``retailctl serve`` as its own process against moto over HTTP, with
``AWS_ENDPOINT_URL`` pointing at a fault-injecting proxy (``tests.support.faults``) in front of
moto. In every case the old model keeps serving, ``/ready`` stays 200, the failure is counted in
``/metrics`` and logged once however many polls repeat it, and the next good object is served.
(A corrupt object and a sha256 mismatch: ``test_s3_hot_reload``.)
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from retail_contract.source import S3Uri
from retail_serving import artifact
from retail_serving.errors import ModelTooLarge
from retail_serving.memory import RELOAD_COST, RESERVE_BYTES
from retail_serving.payloads import EXAMPLE
from retail_serving.storage import S3Store
from tests.support.faults import FaultProxy, Rule, s3_error

from .conftest import PredictorProcess, VersionedBucket, wait_for

pytestmark = pytest.mark.aws

Start = Callable[..., PredictorProcess]
Versions = Callable[[str], bytes]
QUIET_POLLS = 5  # polls watched after a failure to prove it is not logged again
ATTEMPTS = 3  # botocore's standard retry mode: each failing call is tried three times


class CountingProxy(FaultProxy):
    """The fault proxy, also counting the requests it forwards (by method): a HEAD is a poll."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.forwarded: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def forward(
        self, method: str, path: str, headers: object, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._count_lock:
            self.forwarded[method] += 1
        return super().forward(method, path, headers, body)

    def polls(self) -> int:
        with self._count_lock:
            return self.forwarded["HEAD"]


@pytest.fixture
def proxy(bucket: VersionedBucket) -> Iterator[CountingProxy]:
    counting = CountingProxy(bucket.moto.endpoint)
    try:
        yield counting
    finally:
        counting.close()


@pytest.fixture
def served_good(
    bucket: VersionedBucket, proxy: CountingProxy, model_version: Versions, start_predictor: Start
) -> PredictorProcess:
    """A predictor reaching moto through the proxy, serving model ``good``."""
    bucket.put(model_version("good"))
    through_proxy = bucket.moto.env() | {"AWS_ENDPOINT_URL": proxy.endpoint}
    predictor = start_predictor(bucket.uri, through_proxy)
    wait_for(lambda: predictor.serving("good"), "the good model")
    return predictor


def still_serving_good(predictor: PredictorProcess) -> None:
    assert predictor.serving("good")
    assert predictor.get("/ready").status_code == 200
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "good"


def log_lines(predictor: PredictorProcess, marker: str) -> list[str]:
    return [line for line in predictor.log.read_text().splitlines() if marker in line]


@dataclass(frozen=True)
class TemporaryFault:
    """An S3 failure that lasts a while; the predictor retries it on every poll."""

    rules: Callable[[str], list[Rule]]  # given the object's path
    counter: tuple[str, dict[str, str]]  # the /metrics counter that counts each failed poll
    logged: str  # what the one log line says
    recovered: str | None = None  # the one log line when S3 answers again


TEMPORARY_FAULTS = {
    "S3 unreachable": TemporaryFault(
        lambda path: [Rule(0, path_prefix=path, drop=True)],
        ("retail_model_poll_errors_total", {}),
        "cannot check the model object",
        "model object reachable again",
    ),
    "S3 unreachable mid-download": TemporaryFault(
        lambda path: [Rule(0, method="GET", path_prefix=path, drop=True)],
        ("retail_model_reload_failures_total", {"reason": "unavailable"}),
        "not loading",
    ),
    "S3 throttles HEAD (503 SlowDown)": TemporaryFault(
        lambda path: [s3_error("HEAD", path, "SlowDown", 503)],
        ("retail_model_poll_errors_total", {}),
        "cannot check the model object",
        "model object reachable again",
    ),
    "S3 throttles GET (503 SlowDown)": TemporaryFault(
        lambda path: [s3_error("GET", path, "SlowDown", 503)],
        ("retail_model_reload_failures_total", {"reason": "unavailable"}),
        "SlowDown",
    ),
}


@pytest.mark.parametrize("fault", TEMPORARY_FAULTS.values(), ids=TEMPORARY_FAULTS.keys())
def test_a_temporary_s3_fault_keeps_the_old_model_and_is_logged_once(
    fault: TemporaryFault,
    bucket: VersionedBucket,
    proxy: CountingProxy,
    served_good: PredictorProcess,
    model_version: Versions,
) -> None:
    predictor = served_good
    metric, labels = fault.counter
    before = predictor.metric(metric, **labels)
    rules = [proxy.inject(rule) for rule in fault.rules(f"/{bucket.name}/{bucket.key}")]
    bucket.put(model_version("next"))  # straight to moto: only the predictor's calls fail

    # Counted on every failed poll, retried on every poll, logged once.
    wait_for(
        lambda: predictor.metric(metric, **labels) >= before + 3,
        f"three failed polls counted in {metric}",
    )
    still_serving_good(predictor)
    assert len(log_lines(predictor, fault.logged)) == 1, predictor.log.read_text()

    proxy.clear()
    wait_for(lambda: predictor.serving("next"), "the next good object once S3 answers again")
    assert predictor.get("/ready").status_code == 200
    # Every failed poll made exactly ATTEMPTS calls; the poll under way when S3 came back may
    # have made fewer before its next attempt succeeded (it is not a failed poll).
    failed_polls = predictor.metric(metric, **labels) - before
    attempts = sum(rule.hits for rule in rules)
    assert ATTEMPTS * failed_polls <= attempts < ATTEMPTS * (failed_polls + 1), (
        f"{attempts} failed calls for {failed_polls:.0f} failed polls"
    )
    if fault.recovered:
        assert len(log_lines(predictor, fault.recovered)) == 1
    assert len(log_lines(predictor, fault.logged)) == 1  # and nothing more about the fault


def truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def wrong_feature_schema(good: bytes) -> bytes:
    """A well-formed model trained on other columns (``SPEND`` renamed ``SPEND_GBP``)."""
    import xgboost

    booster = xgboost.Booster(model_file=bytearray(good))
    schema = json.loads(booster.attr(artifact.ATTR_SCHEMA) or "{}")
    for feature in schema["features"]:
        if feature["name"] == "SPEND":
            feature["name"] = "SPEND_GBP"
    booster.set_attr(**{artifact.ATTR_SCHEMA: json.dumps(schema)})
    return bytes(booster.save_raw("ubj"))


REJECTED = {
    "truncated object": (truncated, "format", "not valid"),
    "wrong feature schema": (wrong_feature_schema, "schema", "SPEND_GBP"),
}


@pytest.mark.parametrize(("spoil", "reason", "says"), REJECTED.values(), ids=REJECTED.keys())
def test_an_object_that_is_not_servable_is_refused_once_and_not_retried(
    spoil: Callable[[bytes], bytes],
    reason: str,
    says: str,
    bucket: VersionedBucket,
    proxy: CountingProxy,
    served_good: PredictorProcess,
    model_version: Versions,
) -> None:
    predictor = served_good
    bad = spoil(model_version("bad"))
    bucket.put(bad)  # with its own, correct, sha256: only its content is wrong
    failures = ("retail_model_reload_failures_total", {"reason": reason})
    wait_for(lambda: predictor.metric(failures[0], **failures[1]) == 1, f"a {reason} refusal")
    downloads = proxy.forwarded["GET"]

    polls = proxy.polls()
    wait_for(lambda: proxy.polls() >= polls + QUIET_POLLS, f"{QUIET_POLLS} more polls")
    assert proxy.forwarded["GET"] == downloads  # the same bytes are not fetched again
    assert predictor.metric(failures[0], **failures[1]) == 1
    still_serving_good(predictor)
    assert predictor.info()["last_reload_error"].startswith(reason)
    refusals = log_lines(predictor, "not loading")
    assert len(refusals) == 1 and says in refusals[0], predictor.log.read_text()

    bucket.put(model_version("next"))
    wait_for(lambda: predictor.serving("next"), "the next good object")
    assert predictor.info()["last_reload_error"] is None


def test_an_object_over_max_model_bytes_is_refused_on_its_head_and_never_downloaded(
    bucket: VersionedBucket, proxy: CountingProxy, model_version: Versions, start_predictor: Start
) -> None:
    good = model_version("good")
    bucket.put(good)
    limit = {"MAX_MODEL_BYTES": str(2 * len(good))}
    predictor = start_predictor(
        bucket.uri, bucket.moto.env() | {"AWS_ENDPOINT_URL": proxy.endpoint} | limit
    )
    wait_for(lambda: predictor.serving("good"), "the good model")
    downloads = proxy.forwarded["GET"]
    bucket.put(good + b" " * 2 * len(good))  # three times a model's size, its sha256 recorded
    failures = ("retail_model_reload_failures_total", {"reason": "too_large"})
    wait_for(lambda: predictor.metric(failures[0], **failures[1]) == 1, "a too_large refusal")
    polls = proxy.polls()
    wait_for(lambda: proxy.polls() >= polls + QUIET_POLLS, f"{QUIET_POLLS} more polls")
    assert proxy.forwarded["GET"] == downloads  # refused on its HEAD: not a byte downloaded
    assert predictor.metric(failures[0], **failures[1]) == 1
    still_serving_good(predictor)
    assert "MAX_MODEL_BYTES" in predictor.info()["last_reload_error"]
    bucket.put(model_version("next"))
    wait_for(lambda: predictor.serving("next"), "the next good object")


def test_a_model_too_large_for_the_memory_limit_is_refused_and_the_old_one_serves(
    bucket: VersionedBucket, proxy: CountingProxy, model_version: Versions, start_predictor: Start
) -> None:
    """With no MAX_MODEL_BYTES set, the limit follows the container's memory (given here as
    MEMORY_LIMIT_BYTES, as the downward API would; unset, it is read from the cgroup): a model
    the pod could not hold during a reload is refused, not loaded to an OOM kill."""
    good = model_version("good")
    bucket.put(good)
    memory = RESERVE_BYTES + RELOAD_COST * 2 * len(good)  # a limit of twice a good model
    predictor = start_predictor(
        bucket.uri,
        bucket.moto.env() | {"AWS_ENDPOINT_URL": proxy.endpoint, "MEMORY_LIMIT_BYTES": str(memory)},
    )
    wait_for(lambda: predictor.serving("good"), "the good model")
    assert f"models up to {2 * len(good):,} bytes ((memory limit" in predictor.log.read_text()
    downloads = proxy.forwarded["GET"]
    bucket.put(good + b" " * 2 * len(good))  # three times a good model, its sha256 recorded
    failures = ("retail_model_reload_failures_total", {"reason": "too_large"})
    wait_for(lambda: predictor.metric(failures[0], **failures[1]) == 1, "a too_large refusal")
    assert proxy.forwarded["GET"] == downloads  # refused on its HEAD
    still_serving_good(predictor)
    assert "memory limit" in predictor.info()["last_reload_error"]


def test_a_download_over_the_limit_is_refused_before_its_body_is_read(
    bucket: VersionedBucket,
) -> None:
    bucket.put(b"x" * 1000)
    store = S3Store(S3Uri.parse(bucket.uri))
    version = store.head()
    assert version.size == 1000
    with pytest.raises(ModelTooLarge, match="1,000 bytes, over the model size limit of 999"):
        store.fetch(version, 999)  # the GET's own Content-Length, whatever the HEAD said
    with store.fetch(version, 1000) as fetched:
        assert bytes(fetched) == b"x" * 1000


class EndlessChunkedBody:
    """An S3 endpoint whose GET answers with no Content-Length, in chunks (Transfer-Encoding:
    chunked), up to ``total`` bytes, counting what it sent until the client hung up."""

    def __init__(self, total: int) -> None:
        self.sent = 0
        self.finished = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16))
                try:
                    while endpoint.sent < total:
                        self.wfile.write(chunk)
                        endpoint.sent += 1 << 16
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client hung up
                finally:
                    self.close_connection = True
                    endpoint.finished.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_download_without_a_length_stops_at_the_limit(
    bucket: VersionedBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET answered without a Content-Length (chunked) is counted as it arrives and
    refused once past the limit, not read to its end: here 256 MiB against a 1 MiB limit."""
    limit, total = 1 << 20, 256 << 20
    bucket.put(b"x" * 1000)
    version = S3Store(S3Uri.parse(bucket.uri)).head()
    endless = EndlessChunkedBody(total)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endless.endpoint)
        with pytest.raises(ModelTooLarge, match="more than 1,048,576 bytes .no length given"):
            S3Store(S3Uri.parse(bucket.uri)).fetch(version, limit)
        assert endless.finished.wait(30)
    finally:
        endless.close()
    # Generous: what the sockets' buffers held when the client hung up, and no more.
    assert endless.sent < 64 << 20, f"{endless.sent:,} bytes were sent before the refusal"
