"""Serving from a versioned S3 bucket (moto over HTTP): hot reload, bad uploads, zero failures."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from retail_serving.payloads import EXAMPLE

from .conftest import PredictorProcess, VersionedBucket, v2_inputs, wait_for

pytestmark = pytest.mark.aws

Start = Callable[..., PredictorProcess]
Versions = Callable[[str], bytes]
RELOADS = 4  # new versions uploaded under load, after the first


def push(path: Path, bucket: VersionedBucket) -> str:
    """``retailctl model push``; returns its output."""
    retailctl = Path(sys.executable).with_name("retailctl")
    result = subprocess.run(
        [str(retailctl), "model", "push", str(path), bucket.uri],
        capture_output=True,
        text=True,
        env=bucket.moto.env() | {"PATH": str(Path(sys.executable).parent)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_serves_from_s3_and_hot_reloads_a_new_version(
    tmp_path: Path, bucket: VersionedBucket, model_version: Versions, start_predictor: Start
) -> None:
    (tmp_path / "one.ubj").write_bytes(model_version("one"))
    pushed = push(tmp_path / "one.ubj", bucket)
    version_id = next(
        line.split()[-1] for line in pushed.splitlines() if line.startswith("versionId:")
    )
    predictor = start_predictor(bucket.uri, bucket.moto.env())
    wait_for(lambda: predictor.get("/ready").status_code == 200, "the first model")
    info = predictor.info()
    assert info["version"] == "one" and info["version_id"] == version_id
    assert info["source_uri"] == bucket.uri
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "one"

    (tmp_path / "two.ubj").write_bytes(model_version("two"))
    push(tmp_path / "two.ubj", bucket)
    wait_for(lambda: predictor.serving("two"), "model two to be served")
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "two"
    assert predictor.metric("retail_model_reloads_total", outcome="ok") == 2


def test_push_refuses_a_file_that_is_not_a_model(tmp_path: Path, bucket: VersionedBucket) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x80\x05\x95garbage")
    retailctl = Path(sys.executable).with_name("retailctl")
    result = subprocess.run(
        [str(retailctl), "model", "push", str(tmp_path / "model.pkl"), bucket.uri],
        capture_output=True,
        text=True,
        env=bucket.moto.env() | {"PATH": str(Path(sys.executable).parent)},
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "pickle" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    s3 = bucket.moto.client("s3")
    listed = s3.list_object_versions(Bucket=bucket.name)  # type: ignore[attr-defined]
    assert "Versions" not in listed


def test_corrupt_and_mismatched_uploads_keep_the_old_model(
    bucket: VersionedBucket, model_version: Versions, start_predictor: Start
) -> None:
    bucket.put(model_version("good"))
    predictor = start_predictor(bucket.uri, bucket.moto.env())
    wait_for(lambda: predictor.serving("good"), "the good model")

    bucket.put(b"{this is not a model" + bytes(range(256)))
    wait_for(
        lambda: predictor.metric("retail_model_reload_failures_total", reason="format") >= 1,
        "the corrupt upload to be refused",
    )
    assert predictor.serving("good") and predictor.get("/ready").status_code == 200
    assert predictor.info()["last_reload_error"].startswith("format")

    bucket.put(model_version("tampered"), sha256="0" * 64)
    wait_for(
        lambda: predictor.metric("retail_model_reload_failures_total", reason="checksum") >= 1,
        "the sha256 mismatch to be refused",
    )
    assert predictor.serving("good")
    assert predictor.post("/predict", EXAMPLE).json()["model_version"] == "good"
    assert predictor.metric("retail_model_reloads_total", outcome="failed") == 2
    log = predictor.log.read_text()
    assert log.count("not loading") == 2  # once per bad version, though polled many times

    bucket.put(model_version("fixed"))
    wait_for(lambda: predictor.serving("fixed"), "a good upload to be served again")


def test_no_request_fails_during_several_reloads(
    bucket: VersionedBucket, model_version: Versions, start_predictor: Start
) -> None:
    bucket.put(model_version("r0"))
    predictor = start_predictor(bucket.uri, bucket.moto.env())
    wait_for(lambda: predictor.serving("r0"), "the first model")
    requests = [
        ("/predict", EXAMPLE),
        ("/predict/batch", [EXAMPLE] * 20),
        ("/v2/models/price-sensitivity/infer", {"inputs": v2_inputs([EXAMPLE])}),
    ]
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    versions_seen: set[str] = set()
    lock = threading.Lock()

    def client(worker: int) -> None:
        with httpx.Client(base_url=predictor.url, timeout=30) as http:
            turn = worker
            while not stop.is_set():
                path, payload = requests[turn % len(requests)]
                turn += 1
                try:
                    response = http.post(path, json=payload)
                    body = response.json()
                    version = body.get("model_version") or body["predictions"][0]["model_version"]
                    outcome = str(response.status_code)
                except (httpx.HTTPError, ValueError, KeyError) as error:
                    outcome, version = type(error).__name__, None
                with lock:
                    outcomes[outcome] += 1
                    if version:
                        versions_seen.add(version)

    def readiness() -> None:
        with httpx.Client(base_url=predictor.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    outcome = f"ready {http.get('/ready').status_code}"
                except httpx.HTTPError as error:
                    outcome = f"ready {type(error).__name__}"
                with lock:
                    outcomes[outcome] += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    workers.append(threading.Thread(target=readiness))
    for worker in workers:
        worker.start()
    try:
        for number in range(1, RELOADS + 1):
            version = f"r{number}"
            bucket.put(model_version(version))
            wait_for(lambda v=version: predictor.serving(v), f"model {version}")  # type: ignore[misc]
            wait_for(lambda v=version: v in versions_seen, f"a client answered by {version}")  # type: ignore[misc]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert set(outcomes) == {"200", "ready 200"}, outcomes  # readiness never dropped either
    assert outcomes["200"] > 30
    assert versions_seen == {f"r{number}" for number in range(RELOADS + 1)}
    # the first load and every reload, none failed
    assert predictor.metric("retail_model_reloads_total", outcome="ok") == RELOADS + 1
    assert predictor.metric("retail_model_reloads_total", outcome="failed") == 0


def test_a_source_file_pin_rolls_back_without_a_restart(
    tmp_path: Path, bucket: VersionedBucket, model_version: Versions, start_predictor: Start
) -> None:
    """The operator's way: a mounted JSON file names the object and pins; pods re-read it."""
    first = bucket.put(model_version("first"))
    source_file = tmp_path / "model-source.json"
    source_file.write_text(json.dumps({"uri": bucket.uri, "versionId": "", "sha256": ""}))
    env = bucket.moto.env() | {"MODEL_SOURCE_FILE": str(source_file)}
    predictor = start_predictor(None, env)
    wait_for(lambda: predictor.serving("first"), "the first model")
    bucket.put(model_version("second"))
    wait_for(lambda: predictor.serving("second"), "the newest object version")
    source_file.write_text(json.dumps({"uri": bucket.uri, "versionId": first, "sha256": ""}))
    wait_for(lambda: predictor.serving("first"), "the pinned older version")
    assert predictor.info()["version_id"] == first
