"""moto's server (``retail_tools.standin.AwsStandIn``) as a real HTTP endpoint for S3 and ECR,
for every test that needs AWS.

Two servers, for two kinds of test: ``moto`` runs in its own process for the whole session, so
that the predictor and operator processes the tests start reach it over HTTP exactly as they
would reach AWS (``aws_env`` wipes its state before each test that asks for it and points
boto3 in the test's own process at it); ``aws_stand_in`` runs in the test process for the
session, for tests that must steer ECR's scan results over time (``set_scan``: push an image,
finish a scan with chosen findings).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retail_tools.ports import free_port
from retail_tools.standin import ACCESS_KEY, REGION, SECRET_KEY, AwsStandIn

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "free_port"]


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsStandIn]:
    """A moto server in its own process for the whole session; tests that need a clean
    account call ``reset``."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = AwsStandIn(own_process=True, log=log).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto: AwsStandIn, monkeypatch: pytest.MonkeyPatch) -> AwsStandIn:
    """Point boto3 in this process at moto (and nothing real), with a clean account."""
    moto.reset()
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return moto


@pytest.fixture(scope="session")
def aws_stand_in() -> Iterator[AwsStandIn]:
    """An in-process stand-in for the whole session, whose scan results tests can set."""
    stand_in = AwsStandIn().start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
