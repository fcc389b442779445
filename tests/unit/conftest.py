"""A small model trained once per session, for the serving, training and contract unit tests."""

from __future__ import annotations

import pytest

from retail_serving import artifact
from retail_serving.model import Model
from retail_training import training

TRAINING_ROWS = 2_000


@pytest.fixture(scope="session")
def trained() -> training.TrainedModel:
    return training.train(TRAINING_ROWS, seed=11)


@pytest.fixture(scope="session")
def model_bytes(trained: training.TrainedModel) -> bytes:
    return artifact.serialise(
        trained.booster, trained.encoder, trained.version, reference=trained.reference
    )


@pytest.fixture(scope="session")
def model(model_bytes: bytes) -> Model:
    return artifact.load(model_bytes)
