"""A small model trained once per session for the serving unit tests."""

from __future__ import annotations

import pytest

from retail_serving import artifact, training
from retail_serving.model import Model

TRAINING_ROWS = 2_000


@pytest.fixture(scope="session")
def trained() -> training.TrainedModel:
    return training.train(TRAINING_ROWS, seed=11)


@pytest.fixture(scope="session")
def model_bytes(trained: training.TrainedModel) -> bytes:
    return artifact.serialise(trained.booster, trained.encoder, trained.version)


@pytest.fixture(scope="session")
def model(model_bytes: bytes) -> Model:
    return artifact.load(model_bytes)


@pytest.fixture(autouse=True)
def _no_serving_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment: start every test from a clean one."""
    for name in ("MODEL_URI", "MODEL_SOURCE_FILE", "MODEL_VERSION_ID", "MODEL_SHA256"):
        monkeypatch.delenv(name, raising=False)
