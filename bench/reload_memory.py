"""Memory during a hot reload: the predictor's peak RSS against its steady RSS and the model's
size, for the benchmark's 3.5 MB model and for ~100 MB and ~250 MB models (more trees, the
same features).

``python -m bench.reload_memory [--sizes 3.5,100,250] [--reloads 2]``

For each size: ``retailctl serve`` on a local file with no load, the steady RSS once it has
settled, then ``reloads`` hot reloads (the file replaced by a twin with the same trees and
another version, as an upload replaces an object). The server's peak is its kernel-kept high
water mark (``VmHWM``, reset before each reload through ``/proc/<pid>/clear_refs``); the
structure check's helper (its anonymous memory: the model's memory file it maps is the
server's too) is sampled every 5 ms, and so is the sum of the two (what the pod's memory limit
sees). The large models are trained once and cached outside the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import BENCH_CACHE, machine, step, write_result
from bench.servers import Server, retailmodel
from bench.serving import train

WORK = BENCH_CACHE / "reload_memory"
MB = 1_000_000
BIG_ROWS = 200_000  # enough rows that deep trees keep splitting
BIG_DEPTH = 14
# Four trees per class and round, and a small step, so later rounds' trees stay as large as the
# first ones' (with the training's eta of 0.15 they shrink, and 250 MB took hours).
BIG_TREES_PER_ROUND = 4
BIG_ETA = 0.05
ROUNDS_PER_STEP = 1  # a round adds about 6.5 MB
SETTLE_SECONDS = 3.0
SAMPLE_SECONDS = 0.005


def big_model(target_mb: float) -> Path:
    """A model of at least ``target_mb`` MB: the training's features and parameters, deeper
    trees, more of them per round, and as many rounds as it takes (no early stopping: size is
    the point)."""
    path = WORK / "models" / f"model-{target_mb:g}mb.ubj"
    if path.exists():
        return path
    import xgboost

    from retail_serving import artifact
    from retail_serving.encoding import Encoder
    from retail_serving.schema import FeatureSchema
    from retail_training.dataset import generate
    from retail_training.training import PARAMS

    step(f"training a model of {target_mb:g} MB ({BIG_ROWS:,} rows, depth {BIG_DEPTH})")
    schema = FeatureSchema()
    data = generate(BIG_ROWS, seed=3)
    encoder = Encoder.fit(schema, data.columns)
    matrix = xgboost.DMatrix(
        encoder.encode_columns(data.columns),
        label=data.labels,
        feature_names=list(schema.names),
        feature_types=["c" if f.is_categorical else "q" for f in schema.features],
        enable_categorical=True,
    )
    params = {
        **PARAMS,
        "num_class": len(schema.classes),
        "max_depth": BIG_DEPTH,
        "num_parallel_tree": BIG_TREES_PER_ROUND,
        "eta": BIG_ETA,
        "seed": 3,
    }
    booster = xgboost.train(params, matrix, ROUNDS_PER_STEP)
    while (size := len(booster.save_raw("ubj"))) < target_mb * MB:
        step(f"  {booster.num_boosted_rounds()} rounds: {size / MB:.0f} MB")
        booster = xgboost.train(params, matrix, ROUNDS_PER_STEP, xgb_model=booster)
        step(f"  {booster.num_boosted_rounds()} rounds: {size / MB:.0f} MB")
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.set_param({"nthread": 1})
    artifact.write(path, booster, encoder, f"big-{target_mb:g}mb")
    return path


def twin(path: Path) -> Path:
    """The same trees under another version, so serving it is a reload of equal size."""
    copy = path.with_name(path.stem + "-twin.ubj")
    if not copy.exists():
        import xgboost

        from retail_serving import artifact

        booster = xgboost.Booster(model_file=str(path))
        booster.set_attr(**{artifact.ATTR_VERSION: f"{booster.attr(artifact.ATTR_VERSION)}-twin"})
        copy.write_bytes(bytes(booster.save_raw("ubj")))
    return copy


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (or its high water mark, ``VmHWM``) in MB; 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The processes ``pid``'s threads started (the helper is started from a worker thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class Sampler(threading.Thread):
    """The server's, its helpers' and their summed RSS, at their highest since ``start``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks = {"server": 0.0, "helper": 0.0, "sum": 0.0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            server = rss_mb(self.pid)
            # The helper maps the model's memory file, which the server's RSS counts already
            # (and the pod's memory once): its own memory is its anonymous pages.
            helper = sum(rss_mb(child, "RssAnon") for child in children(self.pid))
            for key, value in (("server", server), ("helper", helper), ("sum", server + helper)):
                self.peaks[key] = max(self.peaks[key], value)
            time.sleep(SAMPLE_SECONDS)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self.join()
        return self.peaks


def steady_mb(pid: int, seconds: float = 2.0) -> float:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mb(pid))
        time.sleep(0.05)
    return statistics.median(samples)


def serving_version(server: Server) -> str | None:
    try:
        with urllib.request.urlopen(f"{server.metrics_base}/model/info", timeout=5) as answer:
            version: str = json.load(answer)["version"]
            return version
    except OSError:
        return None


def measure(label: str, model: Path, reloads: int) -> dict[str, Any]:
    served = WORK / "served" / model.name
    served.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, served)
    versions = [model, twin(model)]
    server = retailmodel(served, env={"RELOAD_INTERVAL_SECONDS": "0.2"})
    try:
        server.start(WORK / "logs")
        server.wait_ready(timeout=600)
        assert server.process is not None
        pid = server.process.pid
        time.sleep(SETTLE_SECONDS)
        steady = steady_mb(pid)
        step(f"{label}: {model.stat().st_size / MB:.1f} MB model, steady RSS {steady:.0f} MB")
        rounds = []
        for number in range(1, reloads + 1):
            before = serving_version(server)
            staged = served.with_name(served.name + ".partial")
            shutil.copyfile(versions[number % 2], staged)
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart VmHWM from now
            sampler = Sampler(pid)
            sampler.start()
            started = time.monotonic()
            staged.replace(served)
            while serving_version(server) in (before, None):
                if time.monotonic() - started > 600:
                    raise RuntimeError(f"{label}: reload {number} did not land in 600 s")
                time.sleep(0.05)
            seconds = time.monotonic() - started
            time.sleep(1.0)
            peaks = sampler.stop()
            peak = max(rss_mb(pid, "VmHWM"), peaks["server"])
            after = steady_mb(pid)
            rounds.append(
                {
                    "reload_seconds": seconds,
                    "peak_rss_mb": peak,
                    "helper_peak_rss_mb": peaks["helper"],
                    "server_and_helper_peak_mb": peaks["sum"],
                    "rss_after_mb": after,
                }
            )
            step(
                f"{label} reload {number}: {seconds:.1f} s, peak {peak:.0f} MB "
                f"({peak / steady:.2f}x steady), helper {peaks['helper']:.0f} MB, "
                f"server+helper {peaks['sum']:.0f} MB, after {after:.0f} MB"
            )
    finally:
        server.stop()
    return {
        "label": label,
        "model_bytes": model.stat().st_size,
        "steady_rss_mb": steady,
        "reloads": rounds,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "peak_over_steady": max(r["peak_rss_mb"] for r in rounds) / steady,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3.5,100,250", help="model sizes in MB")
    parser.add_argument("--reloads", type=int, default=2, help="reloads per size")
    args = parser.parse_args()
    runs = []
    for size in args.sizes.split(","):
        model = train(1) if size == "3.5" else big_model(float(size))
        runs.append(measure(f"{size} MB", model, args.reloads))
    write_result(
        "reload_memory",
        {"settings": {"reloads": args.reloads}, "machine": machine(), "runs": runs},
    )


if __name__ == "__main__":
    main()
