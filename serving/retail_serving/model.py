"""A loaded model in memory: the booster with the schema and encoder it was trained with.

``Model`` is immutable once built and safe to share between threads (XGBoost's
``inplace_predict`` is thread-safe), so the registry can hand the same instance to any number
of concurrent requests while a reload prepares the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from retail_serving.encoding import Encoder, Matrix
from retail_serving.errors import SmokeTestFailed
from retail_serving.schema import FeatureSchema

Probabilities = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Model:
    """A booster plus everything needed to feed it and read its output."""

    booster: Any  # xgboost.Booster (xgboost ships no type information)
    schema: FeatureSchema
    encoder: Encoder
    version: str
    sha256: str

    @property
    def classes(self) -> tuple[str, ...]:
        return self.schema.classes

    def predict_proba(self, matrix: Matrix) -> Probabilities:
        """Class probabilities, one row per input row, columns in ``classes`` order."""
        output = self.booster.inplace_predict(matrix, validate_features=False)
        probabilities: Probabilities = np.asarray(output, dtype=np.float32).reshape(
            len(matrix), len(self.classes)
        )
        return probabilities

    def smoke_test(self) -> None:
        """Predict one all-unknown row and insist on a proper probability vector."""
        row = np.zeros((1, len(self.schema.features)), dtype=np.float32)
        for column, feature in enumerate(self.schema.features):
            if not feature.is_categorical:
                row[0, column] = 1.0
        try:
            probabilities = self.predict_proba(row)
        except Exception as error:  # any failure here means "do not serve this model"
            raise SmokeTestFailed(f"test prediction failed: {error}") from error
        if not np.isfinite(probabilities).all() or abs(float(probabilities.sum()) - 1.0) > 1e-3:
            raise SmokeTestFailed(f"test prediction is not a distribution: {probabilities}")
