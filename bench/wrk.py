"""Driving ``wrk`` (Debian's HTTP load generator) on the load core and reading its figures.

Each run POSTs one fixed JSON body. A Lua ``done`` hook prints the summary as one JSON line
(requests, errors by kind, answers with a status over 399, latency percentiles), so nothing
depends on wrk's human output.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import BENCH_CACHE, LOAD_CPU, ensure_apt_tool, pinned

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("%(body)s", "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  -- summary.errors.status counts answers with a status over 399. (A count kept in a
  -- response() callback is not seen here: each wrk thread runs its own Lua state, and done()
  -- yet another, so such a count always read 0.)
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "error_status": %%d, ' ..
    '"p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    seconds: float
    requests: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    failed: int  # connect/read/write errors, timeouts and answers with a status over 399

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _script_for(body: Path) -> Path:
    script = BENCH_CACHE / "wrk" / f"{body.stem}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(_SCRIPT % {"body": body})
    return script


def run(url: str, body: Path, *, connections: int, seconds: float) -> LoadResult:
    """POST ``body`` to ``url`` for ``seconds`` over ``connections`` keep-alive connections."""
    wrk = ensure_apt_tool("wrk", "wrk")
    command = pinned(
        LOAD_CPU,
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            "-s",
            str(_script_for(body)),
            url,
        ],
    )
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next((row for row in completed.stdout.splitlines() if row.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    duration = raw["duration_us"] / 1e6
    failed = sum(
        raw[kind]
        for kind in ("connect_errors", "read_errors", "write_errors", "timeouts", "error_status")
    )
    return LoadResult(
        connections=connections,
        seconds=duration,
        requests=raw["requests"],
        requests_per_second=raw["requests"] / duration if duration else 0.0,
        p50_ms=raw["p50_ms"],
        p90_ms=raw["p90_ms"],
        p99_ms=raw["p99_ms"],
        max_ms=raw["max_ms"],
        failed=failed,
    )
