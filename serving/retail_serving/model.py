"""A loaded model in memory: the booster with the schema and encoder it was trained with.

``Model`` is immutable once built and safe to share between threads (XGBoost's in-place
prediction is thread-safe), so the registry can hand the same instance to any number of
concurrent requests while a reload prepares the next one.

Predictions go straight to XGBoost's C entry point for in-place dense prediction, the one
``Booster.inplace_predict`` ends up calling. For a small batch, ``inplace_predict`` spends
most of its time in Python, checking whether the input is Arrow, pandas, polars, cuDF… before
it gets there; calling it directly cuts a single-row call to about a third (measured with
xgboost 3.2). ``tests/unit/serving/test_model.py`` checks both give identical answers, and if
the entry point is ever missing we fall back to ``inplace_predict``.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from retail_serving.encoding import Encoder, Matrix
from retail_serving.errors import SmokeTestFailed
from retail_serving.reference import Reference
from retail_serving.schema import FeatureSchema

Probabilities = npt.NDArray[np.float32]
Predict = Callable[[Matrix], Probabilities]

_PREDICT_CONFIG = json.dumps(
    {
        "type": 0,  # probabilities, not margins
        "training": False,
        "iteration_begin": 0,
        "iteration_end": 0,
        "missing": float("nan"),
        "strict_shape": True,  # always (rows, classes)
        "cache_id": 0,
    }
).encode()
# numpy's array interface (v3) for a C-contiguous float32 matrix: pointer, rows, columns.
_ARRAY_INTERFACE = b'{"data":[%d,false],"shape":[%d,%d],"strides":null,"typestr":"<f4","version":3}'


def dense_predictor(booster: Any) -> Predict:
    """A function computing class probabilities for a float32 matrix with ``booster``."""
    try:
        from xgboost.core import _LIB, _check_call
    except ImportError:  # pragma: no cover - only if xgboost reorganises its internals

        def through_python(matrix: Matrix) -> Probabilities:
            output = booster.inplace_predict(matrix, validate_features=False, strict_shape=True)
            return np.asarray(output, dtype=np.float32)

        return through_python

    def predict(matrix: Matrix) -> Probabilities:
        data = np.ascontiguousarray(matrix, dtype=np.float32)
        rows, columns = data.shape
        interface = _ARRAY_INTERFACE % (data.ctypes.data, rows, columns)
        shape = ctypes.POINTER(ctypes.c_uint64)()  # xgboost's bst_ulong
        dimensions = ctypes.c_uint64()
        output = ctypes.POINTER(ctypes.c_float)()
        _check_call(
            _LIB.XGBoosterPredictFromDense(
                booster.handle,
                interface,
                _PREDICT_CONFIG,
                ctypes.c_void_p(),
                ctypes.byref(shape),
                ctypes.byref(dimensions),
                ctypes.byref(output),
            )
        )
        result_shape = tuple(int(shape[i]) for i in range(dimensions.value))
        # The buffer belongs to XGBoost and is reused by this thread's next call: copy it now.
        probabilities: Probabilities = np.ctypeslib.as_array(output, shape=result_shape).copy()
        return probabilities

    return predict


def load_booster(data: memoryview) -> Any:
    """An XGBoost booster parsed from ``data`` where it lies: ``Booster(model_file=
    bytearray(data))`` copies the whole file first (the ``bytearray``), a second copy of a
    model during a reload. Raises ``xgboost.core.XGBoostError`` for what XGBoost cannot read."""
    import xgboost

    try:
        from xgboost.core import _LIB, _check_call
    except ImportError:  # pragma: no cover - only if xgboost reorganises its internals
        return xgboost.Booster(model_file=bytearray(data))
    booster = xgboost.Booster()
    held = np.frombuffer(data, dtype=np.uint8)  # its address; read-only, not copied
    try:
        address = ctypes.c_void_p(held.ctypes.data)
        _check_call(
            _LIB.XGBoosterLoadModelFromBuffer(booster.handle, address, ctypes.c_uint64(len(held)))
        )
    finally:
        del held  # the view's export ends here, so its owner can be closed
    return booster


@dataclass(frozen=True, eq=False)
class Model:
    """A booster plus everything needed to feed it and read its output."""

    booster: Any  # xgboost.Booster (xgboost ships no type information)
    schema: FeatureSchema
    encoder: Encoder
    version: str
    sha256: str
    reference: Reference | None = None  # the hold-out's distribution, if the file carries one
    _predict: Predict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_predict", dense_predictor(self.booster))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.schema.classes

    def predict_proba(self, matrix: Matrix) -> Probabilities:
        """Class probabilities, one row per input row, columns in ``classes`` order."""
        probabilities = self._predict(matrix)
        if probabilities.shape != (len(matrix), len(self.classes)):
            raise ValueError(
                f"model answered shape {probabilities.shape} for {len(matrix)} rows "
                f"and {len(self.classes)} classes"
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
