"""The physical ceiling for /predict/batch: XGBoost's ``inplace_predict`` called in-process.

Run pinned to the server core with the server's thread count: ``python -m bench.ceiling MODEL
ROWS SECONDS THREADS`` prints one JSON line with rows per second. It loads the model file the
way the server does and predicts the same encoded matrix the benchmark sends, back to back.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from retail_serving import artifact
from retail_training.dataset import generate


def batch_matrix(model_path: Path, rows: int) -> np.ndarray:
    model = artifact.read(model_path)
    return model.encoder.encode_rows(list(generate(rows, seed=99).rows()))


def measure(model_path: Path, rows: int, seconds: float, threads: int) -> dict[str, float]:
    model = artifact.read(model_path, nthread=threads)
    matrix = batch_matrix(model_path, rows)
    for _ in range(20):  # warm caches and XGBoost's lazy set-up
        model.booster.inplace_predict(matrix, validate_features=False)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        model.booster.inplace_predict(matrix, validate_features=False)
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "threads": threads,
        "calls": calls,
        "seconds": elapsed,
        "rows_per_second": calls * rows / elapsed,
        "us_per_call": elapsed / calls * 1e6,
    }


if __name__ == "__main__":
    path, rows_text, seconds_text, threads_text = sys.argv[1:5]
    print(json.dumps(measure(Path(path), int(rows_text), float(seconds_text), int(threads_text))))
