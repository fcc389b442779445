"""Where a RetailModel predictor's time goes under load: py-spy samples while wrk drives it.

``python -m bench.profile [--route predict|v2|batch] [--connections C] [--seconds S]``

The server runs on the server core, wrk and py-spy on the load core. py-spy's collapsed
stacks are summarised as the share of samples in which each function is on the stack
(inclusive) and at the top of it (self); the summary goes to ``bench/results/profile-<route>.txt``,
the raw stacks (for a flame graph) stay in the cache.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
from collections import Counter
from pathlib import Path

from bench import wrk
from bench.common import BENCH_CACHE, LOAD_CPU, RESULTS_DIR, VENV_BIN, git_commit, pinned, step
from bench.servers import retailmodel
from bench.serving import train, write_bodies

ROUTES = {
    "predict": "/predict",
    "v2": "/v2/models/price-sensitivity/infer",
    "batch": "/predict/batch",
}
BODIES = {"predict": "predict", "v2": "v2_tensor", "batch": "batch"}


def summarise(stacks: Path, top: int = 25) -> str:
    """Inclusive and self shares of samples; the trunk every sample shares (entry points,
    the event loop's run_forever) is left out of the inclusive list as it says nothing."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        if not frames_text:
            continue
        count = int(count_text)
        frames = frames_text.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive  self  function (file:line)"]
    branches = [(f, c) for f, c in inclusive.most_common() if c < 0.5 * total]
    for frame, count in branches[:top]:
        lines.append(f"{100 * count / total:8.1f}% {100 * own[frame] / total:5.1f}%  {frame}")
    lines += ["", "top of stack (self time)"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / total:8.1f}%  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=sorted(ROUTES), default="predict")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    model = train(1)
    bodies = write_bodies(model)
    server = retailmodel(model)
    stacks = BENCH_CACHE / "profiles" / f"{args.route}.txt"
    stacks.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        server.start(BENCH_CACHE / "profile")
        server.wait_ready()
        url = server.base + ROUTES[args.route]
        body = bodies[BODIES[args.route]]
        wrk.run(url, body, connections=args.connections, seconds=2)
        assert server.process is not None
        load = threading.Thread(
            target=wrk.run,
            args=(url, body),
            kwargs={"connections": args.connections, "seconds": args.seconds + 2},
        )
        load.start()
        step(f"py-spy: {args.seconds:.0f} s of {ROUTES[args.route]} at c={args.connections}")
        subprocess.run(
            pinned(
                LOAD_CPU,
                [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.process.pid)]
                + ["--duration", f"{args.seconds:.0f}", "--rate", "250", "--nonblocking"]
                + ["--format", "raw", "--output", str(stacks), "--threads"],
            ),
            check=True,
            capture_output=True,
        )
        load.join()
    finally:
        server.stop()
    summary = (
        f"py-spy of the predictor at commit {git_commit()}: {ROUTES[args.route]}, "
        f"{args.connections} connections, {args.seconds:.0f} s\n" + summarise(stacks)
    )
    (RESULTS_DIR / f"profile-{args.route}.txt").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
