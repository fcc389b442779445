"""The feature schema travels in the model and must match what this server's API accepts."""

from __future__ import annotations

import pytest

from retail_serving.errors import SchemaError
from retail_serving.schema import (
    CLASSES,
    FEATURE_NAMES,
    FEATURES,
    Feature,
    FeatureKind,
    FeatureSchema,
)


def test_the_schema_is_the_seed_request_in_matrix_order() -> None:
    assert FEATURE_NAMES == (
        "BASKET_SIZE",
        "BASKET_TYPE",
        "STORE_REGION",
        "STORE_FORMAT",
        "SPEND",
        "QUANTITY",
        "PROD_CODE_20",
        "PROD_CODE_30",
    )
    assert CLASSES == ("Low", "Medium", "High")
    numeric = [f.name for f in FEATURES if f.kind is FeatureKind.NUMERIC]
    assert numeric == ["SPEND", "QUANTITY"]


def test_schema_json_round_trip() -> None:
    schema = FeatureSchema()
    assert FeatureSchema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize("text", ["not json", "{}", '{"features": [{"name": "X"}], "classes": []}'])
def test_malformed_schema_is_refused(text: str) -> None:
    with pytest.raises(SchemaError):
        FeatureSchema.from_json(text)


def test_a_model_with_other_features_is_refused() -> None:
    other = Feature("PROD_CODE_40", FeatureKind.CATEGORICAL)
    schema = FeatureSchema(features=(*FEATURES[:-1], other))
    with pytest.raises(SchemaError, match="PROD_CODE_40"):
        schema.require_compatible()


def test_duplicate_classes_are_refused() -> None:
    with pytest.raises(SchemaError):
        FeatureSchema(classes=("Low", "Low")).require_compatible()
    FeatureSchema().require_compatible()
