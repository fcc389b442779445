"""Start ``retailctl serve`` with what ``conftest.start_predictor`` does not offer: a command
prefix (a private mount namespace with a read-only root), another log level, another working
directory, and a lifetime beyond one test (module-scoped fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.aws import free_port

from .conftest import RELOAD_INTERVAL, STARTUP_SECONDS, PredictorProcess, wait_for


def launch(
    model_uri: str,
    log: Path,
    env: dict[str, str] | None = None,
    *,
    prefix: tuple[str, ...] = (),
    log_level: str = "info",
    cwd: Path | None = None,
) -> PredictorProcess:
    """A predictor answering /health; its output goes to ``log``. Stop it with ``stop``."""
    port = free_port()
    retailctl = Path(sys.executable).with_name("retailctl")
    command = [str(retailctl), "serve", "--model-uri", model_uri, "--port", str(port)]
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODEL_"))},
        "RELOAD_INTERVAL_SECONDS": RELOAD_INTERVAL,
        **(env or {}),
    }
    process = subprocess.Popen(
        [*prefix, *command, "--log-level", log_level],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=child_env,
        cwd=cwd,
    )
    predictor = PredictorProcess(process, f"http://127.0.0.1:{port}", log)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"predictor exited early:\n{log.read_text()}")
        try:
            return predictor.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, "the predictor to answer /health", STARTUP_SECONDS)
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
