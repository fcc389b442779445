"""What every benchmark shares: folders, CPU pinning, waiting, results and progress.

The machine has two cores: servers run on ``SERVER_CPU`` and load generators on ``LOAD_CPU``
(``taskset``), so a server never competes with the client that measures it. Results go to
``bench/results/<name>.json``; ``bench.report`` turns them into RESULTS.md and the charts.
Peers and scratch files live in a cache outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retail_tools.polling import Timeout, answers, wait_until
from retail_tools.settings import current

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
BENCH_CACHE = current().cache / "bench"
VENV_BIN = Path(sys.executable).parent
SERVER_CPU = "0"
LOAD_CPU = "1"


def step(message: str) -> None:
    """One progress line, timestamped, flushed at once (benchmarks run for minutes)."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command]


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200 (raising if ``process`` dies or time runs out)."""

    def up() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        return answers(url)

    try:
        wait_until(up, timeout=timeout)
    except Timeout:
        raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s") from None


def post_json(url: str, body: bytes) -> Any:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def ensure_apt_tool(binary: str, package: str) -> str:
    """The path of ``binary``, installing its Debian package first if it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    step(f"installing {package} from Debian")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{package} installed but {binary} is not on PATH")
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_average": os.getloadavg()}


def git_commit() -> str:
    """The commit the measured code came from (with ``+dirty`` for local changes)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "serving", "operator"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(),
        "commit": git_commit(),
        **result,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    step(f"wrote {path.relative_to(ROOT)}")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
