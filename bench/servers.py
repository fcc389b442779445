"""The model servers under test, each started as its own process pinned to the server core.

* ``retailmodel``: ``retailctl serve`` from the project's venv, defaults (micro-batching on).
* ``mlserver``: ``mlserver start`` with the ``mlserver_xgboost`` runtime, shipped defaults.
* ``mlserver-batching``: the same with adaptive batching on (``max_batch_size`` /
  ``max_batch_time`` in model-settings.json).
* ``kserve``: KServe's ``ModelServer`` with an xgbserver-style ``kserve.Model`` subclass.

All serve the same model file under the same name and answer the same Open Inference
Protocol request on ``/v2/models/<name>/infer``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BENCH_CACHE, ROOT, SERVER_CPU, VENV_BIN, pinned, wait_http
from bench.peers import KSERVE, MLSERVER, ensure_venv
from retail_tools.ports import free_port

MODEL_NAME = "price-sensitivity"
MLSERVER_BATCH_SIZE = 64
MLSERVER_BATCH_TIME = 0.002  # seconds MLServer may hold a request to fill a batch


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    ready_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int | None = None  # RetailModel's /metrics and /model/info port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_base(self) -> str:
        if self.metrics_port is None:
            raise RuntimeError(f"{self.name} has no separate metrics port here")
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def infer_url(self) -> str:
        return f"{self.base}/v2/models/{MODEL_NAME}/infer"

    def start(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{self.name}.log").open("wb") as log:
            self.process = subprocess.Popen(
                pinned(SERVER_CPU, self.command),
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() reaches worker processes too
            )

    def wait_ready(self, timeout: float = 180) -> None:
        wait_http(self.base + self.ready_path, timeout, self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def retailmodel(model: Path, env: Mapping[str, str] | None = None) -> Server:
    port, metrics_port = free_port(), free_port()
    return Server(
        "retailmodel",
        [str(VENV_BIN / "retailctl"), "serve", "--model-uri", str(model), "--port", str(port)]
        + ["--host", "127.0.0.1", "--log-level", "warning"],
        port,
        "/ready",
        env={"MODEL_NAME": MODEL_NAME, "METRICS_PORT": str(metrics_port), **(env or {})},
        metrics_port=metrics_port,
    )


def mlserver(model: Path, *, batching: bool) -> Server:
    name = "mlserver-batching" if batching else "mlserver"
    bin_dir = ensure_venv(MLSERVER)
    folder = BENCH_CACHE / "serving" / name
    model_dir = folder / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    model_settings: dict[str, object] = {
        "name": MODEL_NAME,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": str(model), "version": "v1"},
    }
    if batching:
        model_settings["max_batch_size"] = MLSERVER_BATCH_SIZE
        model_settings["max_batch_time"] = MLSERVER_BATCH_TIME
    (folder / "settings.json").write_text(json.dumps(settings))
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(
        name,
        [str(bin_dir / "mlserver"), "start", str(folder)],
        port,
        "/v2/health/ready",
        env={"MLSERVER_LOGGING_LEVEL": "WARNING"},
        cwd=folder,
    )


def kserve(model: Path) -> Server:
    bin_dir = ensure_venv(KSERVE)
    port = free_port()
    return Server(
        "kserve",
        [str(bin_dir / "python"), str(ROOT / "bench" / "kserve_xgboost.py")]
        + ["--model_name", MODEL_NAME, "--model_file", str(model)]
        + ["--http_port", str(port), "--grpc_port", str(free_port()), "--nthread", "1"],
        port,
        "/v2/health/ready",
    )
