"""Train the price-sensitivity model on synthetic baskets and measure it on held-out rows.

The rows are split three ways (train / early-stopping validation / hold-out), so the reported
accuracy and log-loss come from rows the model never saw, not even for choosing when to stop.
The hold-out also gives the model its drift reference (``retail_serving.reference``): where its
rows fall in each feature's bins and which classes the model predicts for them.
A small share of known category values is replaced by the unknown code in the training rows
only, so the model learns a sensible answer for categories it will meet only in production.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost

from retail_serving.artifact import sha256_hex
from retail_serving.encoding import UNKNOWN_CODE, Encoder, Matrix
from retail_serving.reference import Reference
from retail_serving.schema import FeatureSchema
from retail_training.dataset import generate

HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.1
UNKNOWN_SHARE = 0.02
MAX_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 20
PARAMS: dict[str, Any] = {
    "objective": "multi:softprob",
    "eval_metric": "mlogloss",
    "tree_method": "hist",
    "max_depth": 5,
    "eta": 0.15,
    "subsample": 0.9,
    "min_child_weight": 2,
    "max_cat_to_onehot": 4,
}

Progress = Callable[[int, int, float], None]  # (round, max rounds, validation log-loss)


@dataclass(frozen=True)
class TrainedModel:
    booster: Any  # xgboost.Booster
    encoder: Encoder
    version: str
    rounds: int
    holdout_rows: int
    holdout_accuracy: float
    holdout_log_loss: float
    majority_accuracy: float  # what always answering the most common class would score
    reference: Reference  # the hold-out's feature bins and predicted classes, for drift


class _ReportProgress(xgboost.callback.TrainingCallback):
    def __init__(self, report: Progress) -> None:
        super().__init__()
        self._report = report

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        self._report(epoch + 1, MAX_ROUNDS, float(evals_log["validation"]["mlogloss"][-1]))
        return False


def _hide_some_categories(matrix: Matrix, encoder: Encoder, rng: np.random.Generator) -> None:
    for column, feature in enumerate(encoder.schema.features):
        if feature.is_categorical and feature.domain is None:
            matrix[rng.random(len(matrix)) < UNKNOWN_SHARE, column] = UNKNOWN_CODE


def log_loss(labels: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float32]) -> float:
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1.0)
    return float(-np.log(picked).mean())


def train(rows: int, seed: int, progress: Progress | None = None) -> TrainedModel:
    """Generate ``rows`` baskets from ``seed``, train, and evaluate on the hold-out share."""
    if rows < 100:
        raise ValueError("need at least 100 rows to train and hold some out")
    schema = FeatureSchema()
    data = generate(rows, seed)
    encoder = Encoder.fit(schema, data.columns)
    matrix = encoder.encode_columns(data.columns)
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    holdout_end = int(rows * HOLDOUT_SHARE)
    validation_end = holdout_end + int(rows * VALIDATION_SHARE)
    holdout, validation, fit = (
        order[:holdout_end],
        order[holdout_end:validation_end],
        order[validation_end:],
    )
    fit_matrix = matrix[fit].copy()
    _hide_some_categories(fit_matrix, encoder, rng)

    feature_types = ["c" if f.is_categorical else "q" for f in schema.features]

    def dmatrix(features: Matrix, labels: npt.NDArray[np.int64]) -> Any:
        return xgboost.DMatrix(
            features,
            label=labels,
            feature_names=list(schema.names),
            feature_types=feature_types,
            enable_categorical=True,
        )

    params = {**PARAMS, "num_class": len(schema.classes), "seed": seed}
    booster = xgboost.train(
        params,
        dmatrix(fit_matrix, data.labels[fit]),
        num_boost_round=MAX_ROUNDS,
        evals=[(dmatrix(matrix[validation], data.labels[validation]), "validation")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        callbacks=[_ReportProgress(progress)] if progress else None,
        verbose_eval=False,
    )
    booster = booster[: booster.best_iteration + 1]
    booster.set_param({"nthread": 1})

    probabilities = np.asarray(booster.inplace_predict(matrix[holdout]), dtype=np.float32)
    labels = data.labels[holdout]
    predicted = probabilities.argmax(axis=1)
    majority = np.bincount(data.labels[fit]).argmax()
    return TrainedModel(
        booster=booster,
        encoder=encoder,
        version=f"s{seed}-n{rows}-{sha256_hex(bytes(booster.save_raw('ubj')))[:8]}",
        rounds=booster.num_boosted_rounds(),
        holdout_rows=len(holdout),
        holdout_accuracy=float((predicted == labels).mean()),
        holdout_log_loss=log_loss(labels, probabilities),
        majority_accuracy=float((labels == majority).mean()),
        reference=Reference.build(encoder, matrix[holdout], predicted),
    )
