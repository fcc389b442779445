"""Encoding is deterministic, stored in the model, and maps unseen values to the unknown code."""

from __future__ import annotations

import numpy as np
import pytest

from retail_serving.encoding import UNKNOWN_CODE, Encoder, Vocabulary
from retail_serving.errors import SchemaError
from retail_serving.payloads import EXAMPLE
from retail_serving.schema import FEATURE_NAMES, FeatureSchema
from retail_training.training import TrainedModel


def test_vocabulary_codes_follow_sorted_values_regardless_of_arrival_order() -> None:
    one = Vocabulary.fit(["W02", "E01", "N03", "E01"])
    other = Vocabulary.fit(["N03", "W02", "E01"])
    assert one == other
    assert [one.code(v) for v in ("E01", "N03", "W02")] == [1, 2, 3]


def test_unseen_values_get_the_unknown_code() -> None:
    vocabulary = Vocabulary.fit(["a", "b"])
    assert vocabulary.code("never-seen") == UNKNOWN_CODE == 0
    assert vocabulary.size == 3


def test_duplicate_vocabulary_values_are_refused() -> None:
    with pytest.raises(SchemaError):
        Vocabulary(("a", "a"))


def test_closed_domains_are_taken_whole_not_from_the_data() -> None:
    columns = {"BASKET_TYPE": ["Top Up"], "STORE_REGION": ["E01"]}
    columns |= {"PROD_CODE_20": ["DEP00001"], "PROD_CODE_30": ["G00001"]}
    encoder = Encoder.fit(FeatureSchema(), columns)
    assert encoder.vocabularies["BASKET_SIZE"].values == ("S", "M", "L")
    assert encoder.vocabularies["STORE_FORMAT"].values == ("SS", "MS", "LS", "XLS")


def test_row_and_batch_encodings_agree(model_encoder: Encoder) -> None:
    rows = [dict(EXAMPLE), {**EXAMPLE, "PROD_CODE_20": "DEP99999", "STORE_REGION": "Mars"}]
    batch = model_encoder.encode_rows(rows)
    assert batch.dtype == np.float32
    assert batch.shape == (2, len(FEATURE_NAMES))
    for index, row in enumerate(rows):
        assert batch[index].tolist() == model_encoder.encode_row(row)


def test_unknown_values_encode_as_unknown_and_numbers_pass_through(model_encoder: Encoder) -> None:
    row = {**EXAMPLE, "STORE_REGION": "Mars", "SPEND": 12.25, "QUANTITY": 3}
    encoded = dict(zip(FEATURE_NAMES, model_encoder.encode_row(row), strict=True))
    assert encoded["STORE_REGION"] == UNKNOWN_CODE
    assert encoded["SPEND"] == 12.25
    assert encoded["QUANTITY"] == 3.0
    assert encoded["BASKET_SIZE"] == model_encoder.vocabularies["BASKET_SIZE"].code("M") != 0


def test_vocabularies_survive_a_json_round_trip(model_encoder: Encoder) -> None:
    restored = Encoder.from_json(model_encoder.schema, model_encoder.vocabularies_json())
    assert restored.vocabularies == model_encoder.vocabularies


def test_malformed_vocabularies_are_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        Encoder.from_json(FeatureSchema(), "[1, 2]")
    with pytest.raises(SchemaError):
        Encoder.from_json(FeatureSchema(), '{"BASKET_SIZE": ["S"]}')


@pytest.fixture
def model_encoder(trained: TrainedModel) -> Encoder:
    return trained.encoder
