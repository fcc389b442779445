"""The drift judge on simulated windows: how often it calls drift on traffic drawn like the
training data (the false-alarm rate), and how surely it finds a shifted mix.

``python -m bench.drift_judge`` (a few minutes on one core) writes
``bench/results/drift_judge.json``; ``bench.report`` turns it into RESULTS.md's section.

A model is trained as ``retailctl train`` trains it (its hold-out is the reference), and a
pool of fresh baskets is drawn from the same generator with another seed, encoded, predicted
once and binned with the model's own reference (``Reference.count`` per row), the way a
predictor counts them. Each simulated window draws its rows from the pool (with replacement)
and calls the operator's own ``judge`` on their class and bin counts, exactly as the operator
does at a window's end. Same-distribution windows measure false alarms; windows whose baskets
come from another store-format mix (every basket from hypermarkets; or more convenience
stores, each format's baskets as before) measure how often drift is found. Seeded: a rerun gives
the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.canary_judge import wilson
from bench.common import machine, step, write_result
from retail_operator.canary.evidence import HoldOut
from retail_operator.drift import judge as drift
from retail_operator.spec import DriftPolicy
from retail_serving.reference import Reference
from retail_training import dataset, training

SEED = 29
POOL = 60_000
WINDOWS = 2_000
SIZES = (100, 1_000, 10_000, 100_000)
TRAININGS = (50_000, 2_000)  # retailctl train's default rows, and the tests' small model


# A moderate shift: the store-format mix moves from the generator's 25/30/30/15 % to this
# (more convenience stores), each format's baskets as before; the other features follow.
SHIFTED_MIX = {"SS": 0.40, "MS": 0.30, "LS": 0.20, "XLS": 0.10}


@dataclass(frozen=True)
class Pool:
    """Fresh baskets, each as its predicted class and its bin in every feature, and the chance
    a window draws each (None: all alike)."""

    classes: npt.NDArray[np.intp]
    bins: npt.NDArray[np.intp]  # rows × features: flat bin positions (Reference.offsets)
    chances: npt.NDArray[np.float64] | None = None


def _pool(
    trained: training.TrainedModel,
    seed: int,
    store_format: str | None = None,
    mix: dict[str, float] | None = None,
) -> Pool:
    columns = dataset.generate(POOL, seed=seed).columns
    if store_format is not None:
        columns["STORE_FORMAT"] = [store_format] * POOL
    chances = None
    if mix is not None:
        base = dict(zip(dataset.STORE_FORMATS, dataset.FORMAT_SHARE, strict=True))
        weights = np.asarray([mix[f] / base[f] for f in columns["STORE_FORMAT"]])
        chances = weights / weights.sum()
    matrix = trained.encoder.encode_columns(columns)
    classes = np.asarray(trained.booster.inplace_predict(matrix)).argmax(axis=1)
    reference = trained.reference
    positions = matrix.astype(np.intp)
    for column, bins in enumerate(reference.features):
        if bins.edges is not None:
            edges = np.asarray(bins.edges, dtype=np.float32)
            positions[:, column] = np.searchsorted(edges, matrix[:, column], side="left")
    return Pool(classes, positions + np.asarray(reference.offsets, dtype=np.intp), chances)


def _hold_out(reference: Reference) -> HoldOut:
    features = {
        (bins.name, label): float(count)
        for bins in reference.features
        for label, count in zip(bins.labels, bins.reference, strict=True)
    }
    return HoldOut({k: float(v) for k, v in reference.predictions.items()}, features)


def _window(
    pool: Pool, rows: int, reference: Reference, classes: tuple[str, ...], rng: np.random.Generator
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    picked = rng.choice(len(pool.classes), size=rows, p=pool.chances)
    by_class = np.bincount(pool.classes[picked], minlength=len(classes))
    by_bin = np.bincount(pool.bins[picked].ravel(), minlength=reference.size)
    labels = [(b.name, label) for b in reference.features for label in b.labels]
    return (
        {name: float(n) for name, n in zip(classes, by_class, strict=True)},
        {key: float(n) for key, n in zip(labels, by_bin, strict=True) if n},
    )


def _run(
    name: str,
    trained: training.TrainedModel,
    pool: Pool,
    rows: int,
    policy: DriftPolicy,
    rng: np.random.Generator,
) -> dict[str, Any]:
    held = _hold_out(trained.reference)
    classes = trained.encoder.schema.classes
    reasons: dict[str, int] = {}
    named: dict[str, int] = {}
    psi_top: list[float] = []
    for _ in range(WINDOWS):
        predictions, features = _window(pool, rows, trained.reference, classes, rng)
        report = drift.judge(predictions, features, held, policy)
        reasons[report.check.reason] = reasons.get(report.check.reason, 0) + 1
        if report.drifted:
            top = report.drifted[0].name
            named[top] = named.get(top, 0) + 1
        psi_top.append(report.features[0].psi if report.features else math.nan)
    alarms = reasons.get(drift.FEATURE_DRIFT, 0) + reasons.get(drift.PREDICTION_DRIFT, 0)
    low, high = wilson(alarms, WINDOWS)
    result = {
        "scenario": name,
        "training_rows": trained.reference.rows * 5,
        "reference_rows": trained.reference.rows,
        "rows": rows,
        "max_feature_psi": policy.max_feature_psi,
        "windows": WINDOWS,
        "alarms": alarms,
        "alarm_interval": [low, high],
        "reasons": reasons,
        "top_feature": named,
        "median_top_psi": float(np.nanmedian(psi_top)),
    }
    step(
        f"{name}, {rows:,} rows, reference {trained.reference.rows:,}, maxFeaturePSI "
        f"{policy.max_feature_psi:g}: {alarms} alarms {reasons}"
    )
    return result


SHIFTED = "store mix SS 40 / MS 30 / LS 20 / XLS 10 %"


def main() -> None:
    rng = np.random.default_rng(SEED)
    runs = []
    for training_rows in TRAININGS:
        step(f"training on {training_rows:,} rows")
        trained = training.train(training_rows, seed=42)
        same = _pool(trained, seed=SEED)
        every_xls = _pool(trained, seed=SEED + 1, store_format="XLS")
        mix = _pool(trained, seed=SEED + 2, mix=SHIFTED_MIX)
        for rows in SIZES:
            policy = DriftPolicy(window_seconds=3600, min_rows=min(rows, 1_000))
            runs.append(_run("same distribution", trained, same, rows, policy, rng))
        for rows in SIZES[:2]:
            policy = DriftPolicy(window_seconds=3600, min_rows=min(rows, 1_000))
            runs.append(_run("every basket XLS", trained, every_xls, rows, policy, rng))
        for rows in SIZES[1:3]:
            for threshold in (0.25, 0.1):  # the default, and a watchful setting
                policy = DriftPolicy(min_rows=1_000, max_feature_psi=threshold)
                runs.append(_run(SHIFTED, trained, mix, rows, policy, rng))
    write_result(
        "drift_judge",
        {
            "seed": SEED,
            "alpha": drift.ALPHA,
            "max_psi": DriftPolicy().max_feature_psi,
            "pool": POOL,
            "runs": runs,
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
