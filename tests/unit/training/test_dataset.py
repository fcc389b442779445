"""The synthetic data is reproducible, valid, and has the structure its docstring promises."""

from __future__ import annotations

import numpy as np

from retail_serving.payloads import ROWS
from retail_serving.schema import CLASSES, FEATURE_NAMES
from retail_training.dataset import generate


def test_same_seed_same_rows_and_other_seed_other_rows() -> None:
    first, again, other = generate(500, seed=5), generate(500, seed=5), generate(500, seed=6)
    assert first.columns == again.columns
    assert (first.labels == again.labels).all()
    assert first.columns != other.columns


def test_every_row_is_a_valid_predict_request() -> None:
    data = generate(2_000, seed=1)
    assert list(data.columns) == list(FEATURE_NAMES)
    rows = list(data.rows())
    assert len(ROWS.validate_python(rows)) == len(rows) == len(data)


def test_all_classes_occur_in_sensible_shares() -> None:
    shares = generate(20_000, seed=2).class_shares()
    assert list(shares) == list(CLASSES)
    assert all(0.2 < share < 0.5 for share in shares.values())


def test_price_sensitive_baskets_pay_less_per_item_within_a_department() -> None:
    data = generate(20_000, seed=3)
    spend = np.asarray(data.columns["SPEND"]) / np.asarray(data.columns["QUANTITY"])
    departments = np.asarray(data.columns["PROD_CODE_20"])
    low, high = CLASSES.index("Low"), CLASSES.index("High")
    cheaper = []
    for department in np.unique(departments):
        here = departments == department
        low_price = np.median(spend[here & (data.labels == low)])
        high_price = np.median(spend[here & (data.labels == high)])
        cheaper.append(high_price < low_price)
    assert np.mean(cheaper) > 0.9


def test_large_formats_draw_more_price_sensitive_shoppers_than_convenience_stores() -> None:
    data = generate(20_000, seed=4)
    formats = np.asarray(data.columns["STORE_FORMAT"])
    high = data.labels == CLASSES.index("High")
    assert high[formats == "XLS"].mean() > high[formats == "SS"].mean() + 0.1
