"""moto's server as a real HTTP endpoint for S3 and ECR, shared by every test that needs AWS.

The server runs as its own process (``moto_server``) so that predictor and operator processes
started by the tests reach it over HTTP exactly as they would reach AWS. ``reset`` wipes its
state between tests that need a clean account.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from retail_tools.standin import ACCESS_KEY, REGION, SECRET_KEY, free_port, stand_in_env

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "MotoServer", "free_port"]


@dataclass(frozen=True)
class MotoServer:
    endpoint: str

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this stand-in."""
        return stand_in_env(self.endpoint)

    def client(self, service: str) -> object:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


def start_moto(log_dir: Path) -> tuple[subprocess.Popen[bytes], MotoServer]:
    port = free_port()
    log = (log_dir / "moto.log").open("wb")
    moto_server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    server = MotoServer(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited early; see {log_dir / 'moto.log'}")
        try:
            urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1).close()
            return process, server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not answer within 30 s; see {log_dir / 'moto.log'}")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for the whole session; tests that need a clean account call ``reset``."""
    process, server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point boto3 in this process at moto (and nothing real), with a clean account."""
    moto.reset()
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return moto
