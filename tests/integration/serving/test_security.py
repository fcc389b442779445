"""The predictor's security promises, each shown on a real ``retailctl serve`` process:

* it writes nothing outside ``TMPDIR``, so it runs with a read-only root filesystem (here the
  whole filesystem is remounted read-only in a private mount namespace, as in its pod);
* no AWS credential appears in anything it prints or answers, even on failures;
* a pickle is refused without ever being unpickled (its unpickling would create a file);
* its answers name no server software;
* ``/metrics`` and ``/model/info`` answer on the metrics port only, not the API's.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from retail_serving.payloads import EXAMPLE
from tests.support.aws import ACCESS_KEY, SECRET_KEY
from tests.support.faults import FaultProxy, s3_error

from .conftest import PredictorProcess, VersionedBucket, launch, stop, wait_for

Start = Callable[..., PredictorProcess]
SESSION_TOKEN = "retail-test-session-token-do-not-leak-0000"
Versions = Callable[[str], bytes]

# In a private mount namespace: keep TMPDIR writable (as its own mount), then make the root
# filesystem and /dev/shm read-only for this process tree only, and run the predictor.
READ_ONLY_ROOT = (
    'mount --bind "$TMPDIR" "$TMPDIR" && mount -o remount,bind,ro / '
    '&& mount -o remount,bind,ro /dev/shm && exec "$@"'
)


def private_mounts() -> list[str]:
    """The ``unshare`` prefix for a private mount namespace. Where none can be made the test
    fails, saying why: the suite promises the read-only-root test runs, so it never skips."""
    prefix = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix.insert(1, "--map-root-user")
    if shutil.which("unshare") is None:
        pytest.fail("cannot test a read-only root: unshare (util-linux) is not installed")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        reason = probe.stderr.decode().strip()
        pytest.fail(f"cannot test a read-only root: no mount namespace here: {reason}")
    return prefix


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., PredictorProcess]]:
    """``launcher.launch``, with a read-only root filesystem where ``read_only_except`` (the
    one writable directory, the predictor's TMPDIR) is given."""
    started: list[PredictorProcess] = []

    def run(
        model_uri: str,
        env: dict[str, str],
        *,
        read_only_except: Path | None = None,
        log_level: str = "info",
    ) -> PredictorProcess:
        prefix: tuple[str, ...] = ()
        if read_only_except is not None:
            env = env | {"TMPDIR": str(read_only_except)}
            prefix = (*private_mounts(), "sh", "-c", READ_ONLY_ROOT, "sh")
        log = tmp_path / f"predictor-{len(started)}.log"
        predictor = launch(model_uri, log, env, prefix=prefix, log_level=log_level, cwd=tmp_path)
        started.append(predictor)
        return predictor

    yield run
    for predictor in started:
        stop(predictor)


@pytest.mark.aws
def test_the_predictor_serves_and_hot_reloads_on_a_read_only_root_filesystem(
    tmp_path: Path,
    bucket: VersionedBucket,
    model_version: Versions,
    start: Callable[..., PredictorProcess],
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    bucket.put(model_version("one"))
    predictor = start(bucket.uri, bucket.moto.env(), read_only_except=tmpdir)
    wait_for(lambda: predictor.serving("one"), "model one")
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "one"
    assert predictor.post("/predict/batch", [EXAMPLE] * 50).json()["count"] == 50

    bucket.put(model_version("two"))
    wait_for(lambda: predictor.serving("two"), "model two, hot-reloaded")
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "two"
    assert predictor.get("/ready").status_code == 200
    assert predictor.get_admin("/metrics").status_code == 200
    # It really ran read-only: its own attempt to write beside itself fails, and it never tried.
    probe = subprocess.run(
        [*private_mounts(), "sh", "-c", READ_ONLY_ROOT, "sh", "touch", str(tmp_path / "x")],
        env={**os.environ, "TMPDIR": str(tmpdir)},
        capture_output=True,
        check=False,
    )
    assert probe.returncode != 0 and b"Read-only file system" in probe.stderr
    log = predictor.log.read_text()
    assert "Read-only file system" not in log and "Errno 30" not in log, log


@pytest.mark.aws
@pytest.mark.parametrize("log_level", ["info", "debug"])
def test_no_credential_appears_in_logs_answers_or_metrics(
    log_level: str,
    bucket: VersionedBucket,
    model_version: Versions,
    start: Callable[..., PredictorProcess],
) -> None:
    """Planted, distinctive credentials (with a session token, as IRSA gives); every failure
    path the predictor logs is exercised, at the production log level and at debug."""
    proxy = FaultProxy(bucket.moto.endpoint)
    try:
        bucket.put(model_version("good"))
        env = bucket.moto.env() | {
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
        }
        assert env["AWS_ACCESS_KEY_ID"] == ACCESS_KEY and env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
        predictor = start(bucket.uri, env, log_level=log_level)
        wait_for(lambda: predictor.serving("good"), "the good model")
        path = f"/{bucket.name}/{bucket.key}"

        head_denied = proxy.inject(s3_error("HEAD", path, "AccessDenied", 403))
        wait_for(lambda: head_denied.hits >= 2, "a denied HEAD")
        proxy.clear()
        get_denied = proxy.inject(s3_error("GET", path, "AccessDenied", 403))
        bucket.put(model_version("denied"))
        wait_for(lambda: get_denied.hits >= 2, "a denied GET")
        proxy.clear()
        bucket.put(model_version("tampered"), sha256="0" * 64)
        wait_for(
            lambda: predictor.metric("retail_model_reload_failures_total", reason="checksum") >= 1,
            "the tampered model to be refused",
        )
        log = predictor.log.read_text()
        assert "cannot check the model object" in log and "AccessDenied" in log, log

        outputs = {
            "log": log,
            **{route: predictor.get_admin(route).text for route in ("/model/info", "/metrics")},
            **{route: predictor.get(route).text for route in ("/ready", "/openapi.json", "/")},
            "v2 metadata": predictor.get("/v2/models/price-sensitivity").text,
            "bad request": predictor.post("/predict", {"SPEND": "x"}).text,
        }
        for name, text in outputs.items():
            for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, "Credential=", "Signature="):
                assert secret not in text, f"{secret!r} appears in {name}"
    finally:
        proxy.close()


def pickle_that_writes(marker: Path) -> bytes:
    """A protocol-2 pickle that calls ``open(marker, "w")`` when unpickled: if the predictor
    ever unpickled it, ``marker`` would exist."""

    def text(value: str) -> bytes:
        encoded = value.encode()
        return b"X" + struct.pack("<I", len(encoded)) + encoded

    return b"\x80\x02cbuiltins\nopen\n" + text(str(marker)) + text("w") + b"\x86R."


def test_a_pickle_is_refused_with_one_clear_line_and_never_unpickled(
    tmp_path: Path, start_predictor: Start
) -> None:
    marker = tmp_path / "unpickled"
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle_that_writes(marker))
    predictor = start_predictor(str(model))

    wait_for(
        lambda: predictor.metric("retail_model_reload_failures_total", reason="format") == 1,
        "the pickle to be refused",
    )
    assert predictor.get("/health").status_code == 200  # up, so the refusal is visible
    assert predictor.get("/ready").status_code == 503  # but never serving it
    assert predictor.post("/predict", EXAMPLE).status_code == 503
    refusals = [line for line in predictor.log.read_text().splitlines() if "pickle" in line]
    assert len(refusals) == 1 and "refusing to load it" in refusals[0], refusals
    assert "Traceback" not in predictor.log.read_text()
    assert not marker.exists()


def test_answers_name_no_server_software(
    tmp_path: Path, model_version: Versions, start_predictor: Start
) -> None:
    model = tmp_path / "model.ubj"
    model.write_bytes(model_version("one"))
    predictor = start_predictor(str(model))
    wait_for(lambda: predictor.serving("one"), "model one")
    answers = {
        "/predict": predictor.post("/predict", EXAMPLE),
        "/predict refused": predictor.post("/predict", {"SPEND": "x"}),
        "/health": predictor.get("/health"),
        "/v2/models/price-sensitivity": predictor.get("/v2/models/price-sensitivity"),
    }
    for route, answer in answers.items():
        assert "server" not in answer.headers, f"{route} answers server: {answer.headers['server']}"
        assert "date" in answer.headers, route  # an origin server with a clock sends Date


def test_metrics_and_model_info_answer_only_on_the_metrics_port(
    tmp_path: Path, model_version: Versions, start_predictor: Start
) -> None:
    """What the Service exposes (the API port) tells no client the model's digest, where it
    came from or every route's traffic; the operator and Prometheus read them by pod IP."""
    model = tmp_path / "model.ubj"
    model.write_bytes(model_version("one"))
    predictor = start_predictor(str(model))
    wait_for(lambda: predictor.serving("one"), "model one")
    for path in ("/metrics", "/model/info"):
        assert predictor.get(path).status_code == 404, path
        assert predictor.get_admin(path).status_code == 200, path
    assert predictor.get_admin("/model/info").json()["version"] == "one"
    assert "retail_model_info" in predictor.get_admin("/metrics").text
    assert predictor.post("/predict", EXAMPLE).status_code == 200
    assert httpx.post(predictor.admin_url + "/predict", json=EXAMPLE).status_code == 404
