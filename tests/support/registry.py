"""An in-process moto server for tests that must steer ECR's scan results over time
(``retail_tools.standin``: push an image, finish a scan with chosen findings)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retail_tools.standin import AwsStandIn


@pytest.fixture(scope="session")
def aws_stand_in() -> Iterator[AwsStandIn]:
    stand_in = AwsStandIn().start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
