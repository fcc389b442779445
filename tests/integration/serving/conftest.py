"""Real predictor processes (``retailctl serve`` under uvicorn) for the serving integration tests.

Each ``PredictorProcess`` is a child process reached over HTTP on two free ports (the API's
and the metrics port), exactly as a client, a kubelet or a scraper would reach it; when it
serves from S3 it talks to the moto server over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from retail_serving import artifact
from retail_serving.schema import FEATURE_NAMES
from retail_tools.polling import Timeout, wait_until
from retail_tools.standin import AwsStandIn
from retail_training import training
from tests.support.aws import REGION, free_port

TRAINING_ROWS = 2_000
STARTUP_SECONDS = 120
RELOAD_INTERVAL = "0.2"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until true; fail the test (saying what never happened) at the deadline."""
    try:
        wait_until(condition, timeout=timeout, interval=0.1)
    except Timeout:
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def v2_inputs(rows: list[Any]) -> list[dict[str, Any]]:
    """The Open Inference Protocol's named inputs (one per feature) carrying ``rows``."""
    return [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(rows[0][name], str) else "FP64",
            "shape": [len(rows)],
            "data": [row[name] for row in rows],
        }
        for name in FEATURE_NAMES
    ]


@dataclass
class PredictorProcess:
    process: subprocess.Popen[bytes]
    url: str  # the API port, the one a Service exposes
    admin_url: str  # the metrics port: /metrics and /model/info
    log: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def get_admin(self, path: str) -> httpx.Response:
        return httpx.get(self.admin_url + path, timeout=10)

    def post(self, path: str, payload: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=payload, timeout=10)

    def info(self) -> dict[str, Any]:
        response = self.get_admin("/model/info")
        return response.json() if response.status_code == 200 else {}

    def metric(self, name: str, **labels: str) -> float:
        wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        for line in self.get_admin("/metrics").text.splitlines():
            if line.startswith(wanted if labels else name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def serving(self, version: str) -> bool:
        return self.info().get("version") == version


def launch(
    model_uri: str | None,
    log: Path,
    env: dict[str, str] | None = None,
    *,
    prefix: tuple[str, ...] = (),
    log_level: str = "info",
    cwd: Path | None = None,
) -> PredictorProcess:
    """A predictor answering /health; its output goes to ``log``. Stop it with ``stop``.
    ``prefix`` wraps the command (e.g. a private mount namespace); without ``model_uri`` the
    settings come from ``env`` alone."""
    port, metrics_port = free_port(), free_port()
    retailctl = Path(sys.executable).with_name("retailctl")
    location = [] if model_uri is None else ["--model-uri", model_uri]
    command = [str(retailctl), "serve", *location, "--port", str(port)]
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_"))},
        "RELOAD_INTERVAL_SECONDS": RELOAD_INTERVAL,
        "METRICS_PORT": str(metrics_port),
        **(env or {}),
    }
    process = subprocess.Popen(
        [*prefix, *command, "--log-level", log_level],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=child_env,
        cwd=cwd,
    )
    predictor = PredictorProcess(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", log
    )

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"predictor exited early:\n{log.read_text()}")
        try:
            return (
                predictor.get("/health").status_code == 200
                and predictor.get_admin("/metrics").status_code == 200
            )
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, "the predictor to answer /health and /metrics", STARTUP_SECONDS)
    except BaseException:
        stop(predictor)
        raise
    return predictor


def stop(predictor: PredictorProcess) -> None:
    predictor.process.terminate()
    try:
        predictor.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        predictor.process.kill()
        predictor.process.wait(timeout=15)


@pytest.fixture
def start_predictor(tmp_path: Path) -> Iterator[Callable[..., PredictorProcess]]:
    started: list[PredictorProcess] = []

    def start(model_uri: str | None, env: dict[str, str] | None = None) -> PredictorProcess:
        log = tmp_path / f"predictor-{len(started)}.log"
        predictor = launch(model_uri, log, env)
        started.append(predictor)
        return predictor

    yield start
    for predictor in started:
        stop(predictor)


@pytest.fixture(scope="session")
def trained() -> training.TrainedModel:
    return training.train(TRAINING_ROWS, seed=21)


@pytest.fixture(scope="session")
def model_version(trained: training.TrainedModel) -> Callable[[str], bytes]:
    """Model files that differ only in their embedded version (so each is a new object)."""

    def make(version: str) -> bytes:
        return artifact.serialise(trained.booster, trained.encoder, version)

    return make


@dataclass(frozen=True)
class VersionedBucket:
    moto: AwsStandIn
    name: str
    key: str = "models/retail-price-sensitivity/model.ubj"

    @property
    def uri(self) -> str:
        return f"s3://{self.name}/{self.key}"

    def put(self, data: bytes, *, sha256: str | None = None) -> str:
        """Upload raw bytes (bypassing the CLI's checks) with the given sha256 metadata."""
        digest = artifact.sha256_hex(data) if sha256 is None else sha256
        response = self.moto.client("s3").put_object(  # type: ignore[attr-defined]
            Bucket=self.name, Key=self.key, Body=data, Metadata={"sha256": digest}
        )
        return str(response["VersionId"])


@pytest.fixture
def bucket(aws_env: AwsStandIn) -> VersionedBucket:
    name = "mlops-retail-forecast-models"
    s3: Any = aws_env.client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return VersionedBucket(aws_env, name)
