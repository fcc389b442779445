"""Request validation: every bad input is refused with the offending field named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from retail_serving.payloads import (
    EXAMPLE,
    ROW,
    BatchParser,
    InvalidInput,
    parse_one,
    prediction,
    validate_rows,
)
from retail_serving.schema import FEATURE_NAMES, FEATURES


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def test_the_request_row_declares_the_schemas_features_and_closed_domains() -> None:
    """``PredictRequest`` is written out for mypy and the OpenAPI document; the schema (the
    matrix order, what travels in the model) is the source. This holds the two together."""
    described = ROW.json_schema()
    assert tuple(described["properties"]) == FEATURE_NAMES
    assert described["required"] == list(FEATURE_NAMES)
    for feature in FEATURES:
        field = described["properties"][feature.name]
        assert field["type"] == ("string" if feature.is_categorical else "number"), feature
        assert field.get("enum") == (None if feature.domain is None else list(feature.domain))


def test_a_good_request_parses_and_extra_fields_are_ignored() -> None:
    row = parse_one(body({**EXAMPLE, "BASKET_ID": 994100100532898}))
    assert row == EXAMPLE


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"SPEND": 0}, "SPEND"),
        ({"SPEND": -3.5}, "SPEND"),
        ({"QUANTITY": "3"}, "QUANTITY"),
        ({"QUANTITY": True}, "QUANTITY"),
        ({"SPEND": 1e300}, "SPEND"),
        ({"BASKET_SIZE": "XL"}, "BASKET_SIZE"),
        ({"STORE_FORMAT": "ss"}, "STORE_FORMAT"),
        ({"STORE_REGION": ""}, "STORE_REGION"),
        ({"PROD_CODE_20": 12}, "PROD_CODE_20"),
        ({"PROD_CODE_30": "G" * 65}, "PROD_CODE_30"),
        ({"BASKET_TYPE": None}, "BASKET_TYPE"),
    ],
)
def test_bad_values_name_their_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_one(body({**EXAMPLE, **change}))
    assert [error["loc"] for error in caught.value.errors] == [["body", field]]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(literal: bytes) -> None:
    raw = body(EXAMPLE).replace(b'"SPEND":23.5', b'"SPEND":' + literal)
    assert literal in raw
    with pytest.raises(InvalidInput) as caught:
        parse_one(raw)
    assert caught.value.errors == [
        {
            "loc": ["body", "SPEND"],
            "msg": "Input should be a finite number",
            "type": "finite_number",
        }
    ]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_in_a_batch_name_the_row_and_field(literal: bytes) -> None:
    raw = body([EXAMPLE, {**EXAMPLE, "QUANTITY": 7.25}]).replace(b"7.25", literal)
    assert literal in raw
    with pytest.raises(InvalidInput) as caught:
        BatchParser(10).parse(raw)
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [
        (["body", 1, "QUANTITY"], "finite_number")
    ]


def test_a_missing_field_is_named() -> None:
    incomplete = {k: v for k, v in EXAMPLE.items() if k != "QUANTITY"}
    with pytest.raises(InvalidInput) as caught:
        parse_one(body(incomplete))
    expected = {"loc": ["body", "QUANTITY"], "msg": "Field required", "type": "missing"}
    assert caught.value.errors == [expected]


def test_broken_json_is_invalid_input_not_a_crash() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_one(b'{"SPEND": ')
    assert caught.value.errors[0]["type"] == "json_invalid"


def test_batch_errors_name_row_and_field() -> None:
    rows = [EXAMPLE, {**EXAMPLE, "SPEND": -1}]
    with pytest.raises(InvalidInput) as caught:
        BatchParser(10).parse(body(rows))
    assert caught.value.errors[0]["loc"] == ["body", 1, "SPEND"]
    assert not caught.value.too_large


def test_batch_over_the_cap_is_too_large_and_empty_is_invalid() -> None:
    parser = BatchParser(3)
    assert len(parser.parse(body([EXAMPLE] * 3))) == 3
    with pytest.raises(InvalidInput) as over:
        parser.parse(body([EXAMPLE] * 4))
    assert over.value.too_large
    with pytest.raises(InvalidInput) as empty:
        parser.parse(b"[]")
    assert not empty.value.too_large
    with pytest.raises(InvalidInput):
        parser.parse(body(EXAMPLE))  # an object where a list belongs


def test_rows_from_other_shapes_are_located_by_the_caller() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_rows([dict(EXAMPLE), {**EXAMPLE, "SPEND": "x"}], lambda row, f: [f, row])
    assert caught.value.errors[0]["loc"] == ["SPEND", 1]


def test_prediction_picks_the_most_probable_class() -> None:
    answer = prediction([0.2, 0.5, 0.3], ("Low", "Medium", "High"), "v1")
    assert answer == {
        "prediction": "Medium",
        "probability": {"Low": 0.2, "Medium": 0.5, "High": 0.3},
        "confidence": 0.5,
        "model_version": "v1",
    }
