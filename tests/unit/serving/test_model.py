"""The direct prediction call gives exactly what XGBoost's own inplace_predict gives."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from retail_serving.model import Model
from retail_training.dataset import generate


@pytest.mark.parametrize("rows", [1, 2, 63, 64, 65, 1_000])
def test_direct_prediction_matches_inplace_predict(model: Model, rows: int) -> None:
    data = generate(rows, seed=rows)
    matrix = model.encoder.encode_columns(data.columns)
    matrix[::7, 2] = 0  # some unknown regions too
    expected = model.booster.inplace_predict(matrix, validate_features=False)
    actual = model.predict_proba(matrix)
    assert actual.dtype == np.float32 and actual.shape == (rows, 3)
    np.testing.assert_array_equal(actual, expected)


def test_results_stay_valid_after_later_calls(model: Model) -> None:
    matrix = model.encoder.encode_columns(generate(10, seed=1).columns)
    first = model.predict_proba(matrix)
    kept = first.copy()
    model.predict_proba(matrix[::-1].copy())
    np.testing.assert_array_equal(first, kept)  # not a view of XGBoost's reused buffer


def test_concurrent_threads_get_their_own_answers(model: Model) -> None:
    matrices = [model.encoder.encode_columns(generate(50, seed=s).columns) for s in range(4)]
    expected = [model.predict_proba(m) for m in matrices]
    mismatches: list[int] = []

    def work(index: int) -> None:
        for _ in range(30):
            if not np.array_equal(model.predict_proba(matrices[index]), expected[index]):
                mismatches.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []


def test_a_non_contiguous_matrix_is_handled(model: Model) -> None:
    matrix = model.encoder.encode_columns(generate(20, seed=2).columns)
    strided = matrix[::2]
    assert not strided.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(model.predict_proba(strided), model.predict_proba(strided.copy()))
