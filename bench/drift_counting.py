"""What counting rows in the drift reference's bins costs a model call, side by side.

``python -m bench.drift_counting`` (about a minute on one core) writes
``bench/results/drift_counting.json``; ``bench.report`` turns it into RESULTS.md's section.

The same booster is loaded twice, from the same training: once from a file with its drift
reference and once from a file without (as a model trained before the reference existed).
Each is called through the predictor's own ``InferenceEngine.predict_matrix`` (inline, on
the event loop, as single-row micro-batches run), so the difference is exactly what the hot
path adds: the per-class count both have, and the feature-bin count only the first has. The
two alternate in short blocks, many times over, and each figure is the median block's CPU
time (the thread's, not the wall clock's: time spent waiting for the core a neighbour on this
shared machine holds is not the predictor's). The in-process single-row
request it is set against is docs/performance.md's 12.4 µs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import machine, step, write_result
from retail_serving import artifact
from retail_serving.inference import InferenceEngine
from retail_serving.metrics import FEW_ROWS, ServingMetrics
from retail_serving.model import Model
from retail_training import dataset, training

ROWS_PER_CALL = (1, FEW_ROWS, FEW_ROWS + 1, 64, 1_000)
BLOCKS = 31
CALLS_PER_BLOCK = 2_000  # rows per block at most 200,000, so a 1,000-row block makes 200 calls
SEED = 11


async def _block(engine: InferenceEngine, model: Model, matrix: Any, calls: int) -> float:
    started = time.thread_time()
    for _ in range(calls):
        await engine.predict_matrix(model, matrix)
    return (time.thread_time() - started) / calls


async def _measure(with_reference: Model, without: Model) -> list[dict[str, Any]]:
    engine = InferenceEngine(
        ServingMetrics(),
        inline_max_rows=1_000_000,
        microbatch=False,
        microbatch_max_rows=256,
        microbatch_max_wait=0.0,
    )
    baskets = dataset.generate(max(ROWS_PER_CALL), seed=SEED + 1).columns
    encoded = with_reference.encoder.encode_columns(baskets)
    figures = []
    for rows in ROWS_PER_CALL:
        matrix = encoded[:rows].copy()
        calls = max(CALLS_PER_BLOCK * 8 // max(rows, 8), 20)
        timed: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(BLOCKS):
            timed["with"].append(await _block(engine, with_reference, matrix, calls))
            timed["without"].append(await _block(engine, without, matrix, calls))
        with_us = statistics.median(timed["with"]) * 1e6
        without_us = statistics.median(timed["without"]) * 1e6
        figures.append(
            {
                "rows": rows,
                "calls_per_block": calls,
                "with_us": with_us,
                "without_us": without_us,
                "added_us": with_us - without_us,
                "added_per_row_us": (with_us - without_us) / rows,
            }
        )
        step(f"{rows:>5} rows: {without_us:8.1f} µs without, {with_us:8.1f} µs with the bins")
    return figures


def main() -> None:
    step("training the model (the unit tests' training)")
    trained = training.train(2_000, seed=SEED)
    version = trained.version
    with_reference = artifact.load(
        artifact.serialise(trained.booster, trained.encoder, version, reference=trained.reference)
    )
    without = artifact.load(artifact.serialise(trained.booster, trained.encoder, version + "-old"))
    assert with_reference.reference is not None and without.reference is None
    figures = asyncio.run(_measure(with_reference, without))
    write_result(
        "drift_counting",
        {"blocks": BLOCKS, "few_rows": FEW_ROWS, "calls": figures, "machine": machine()},
    )


if __name__ == "__main__":
    main()
