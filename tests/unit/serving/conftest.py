"""The serving unit tests start from an environment without predictor settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_serving_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment: start every test from a clean one."""
    for name in ("MODEL_URI", "MODEL_SOURCE_FILE", "MODEL_VERSION_ID", "MODEL_SHA256"):
        monkeypatch.delenv(name, raising=False)
