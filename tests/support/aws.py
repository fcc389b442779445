"""moto's server as a real HTTP endpoint for S3 and ECR, shared by every test that needs AWS.

One ``retail_tools.standin`` server in its own process for the whole session, so that the
predictor and operator processes the tests start reach it over HTTP exactly as they would
reach AWS; ``aws_env`` wipes its state before each test that asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retail_tools.ports import free_port
from retail_tools.standin import ACCESS_KEY, REGION, SECRET_KEY, AwsStandIn

# The name the tests give the session's server in their signatures.
MotoServer = AwsStandIn

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "MotoServer", "free_port"]


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for the whole session; tests that need a clean account call ``reset``."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = AwsStandIn(own_process=True, log=log).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point boto3 in this process at moto (and nothing real), with a clean account."""
    moto.reset()
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return moto
