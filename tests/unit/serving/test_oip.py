"""Open Inference Protocol decoding: named per-feature inputs and one encoded FP32 tensor."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from retail_serving import oip
from retail_serving.encoding import UNKNOWN_CODE
from retail_serving.model import Model
from retail_serving.payloads import EXAMPLE, InvalidInput
from retail_serving.schema import FEATURE_NAMES


def named_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(rows[0][name], str) else "FP64",
            "shape": [len(rows), 1],
            "data": [[row[name]] for row in rows],
        }
        for name in FEATURE_NAMES
    ]


def decode(payload: dict[str, Any], model: Model, max_rows: int = 100) -> oip.InferRequest:
    return oip.decode_infer(orjson.dumps(payload), model.encoder, max_rows)


def test_named_inputs_encode_like_predict(model: Model) -> None:
    rows = [dict(EXAMPLE), {**EXAMPLE, "PROD_CODE_30": "G99999"}]
    request = decode({"id": "r1", "inputs": named_inputs(rows)}, model)
    assert request.id == "r1"
    assert request.outputs == oip.OUTPUTS
    np.testing.assert_array_equal(request.features, model.encoder.encode_rows(rows))
    assert request.features[1, FEATURE_NAMES.index("PROD_CODE_30")] == UNKNOWN_CODE


def test_an_encoded_tensor_is_taken_as_is(model: Model) -> None:
    encoded = model.encoder.encode_rows([EXAMPLE, EXAMPLE])
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [2, 8], "data": encoded.tolist()}
    request = decode({"inputs": [tensor], "outputs": [{"name": "prediction"}]}, model)
    np.testing.assert_array_equal(request.features, encoded)
    assert request.outputs == ("prediction",)


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"datatype": "FP64", "data": [[1.0], [1.0]]}, ["inputs", 0, "datatype"]),
        ({"shape": [2, 2]}, ["inputs", 0, "shape"]),
        ({"data": [["M"]]}, ["inputs", 0, "data"]),
        ({"data": "M"}, ["inputs", 0, "data"]),
        ({"data": [["M"], "M"]}, ["inputs", 0, "data"]),
        ({"name": "BASKET_COLOUR"}, ["inputs", 0, "name"]),
    ],
)
def test_bad_named_inputs_are_located_and_named(
    change: dict[str, Any], loc: list[Any], model: Model
) -> None:
    inputs = named_inputs([EXAMPLE, EXAMPLE])
    inputs[0] |= change
    with pytest.raises(InvalidInput) as caught:
        decode({"inputs": inputs}, model)
    assert caught.value.errors[0]["loc"] == loc
    assert inputs[0]["name"] in caught.value.errors[0]["msg"]  # not only its index


def test_bad_values_in_named_inputs_follow_predict_rules_and_name_the_input(model: Model) -> None:
    inputs = named_inputs([EXAMPLE, {**EXAMPLE, "SPEND": -2.0}])
    with pytest.raises(InvalidInput) as caught:
        decode({"inputs": inputs}, model)
    spend = FEATURE_NAMES.index("SPEND")
    assert caught.value.errors[0]["loc"] == ["inputs", spend, "data", 1]
    assert caught.value.errors[0]["msg"] == "SPEND: Input should be greater than 0"


def test_inputs_of_different_lengths_are_named_with_their_counts(model: Model) -> None:
    inputs = named_inputs([EXAMPLE, EXAMPLE])
    inputs[4] |= {"shape": [1], "data": [20.0]}
    with pytest.raises(InvalidInput, match=r"\(BASKET_SIZE 2, .*SPEND 1, "):
        decode({"inputs": inputs}, model)


def test_a_missing_feature_is_named(model: Model) -> None:
    inputs = named_inputs([EXAMPLE])[:-1]
    with pytest.raises(InvalidInput, match="PROD_CODE_30"):
        decode({"inputs": inputs}, model)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 1, 1, 1, 20, 3, 1, 1000], "PROD_CODE_30"),
        ([1, 1.5, 1, 1, 20, 3, 1, 1], "BASKET_TYPE"),
        ([1, 1, 1, 1, -20, 3, 1, 1], "SPEND"),
        ([1, 1, 1, 1, 20, "3", 1, 1], "finite number"),
        ([1, 1, 1, 1, 20, 3, 1], "expected 8 values"),
    ],
)
def test_bad_tensors_are_refused(data: list[Any], message: str, model: Model) -> None:
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [1, 8], "data": data}
    with pytest.raises(InvalidInput, match=message):
        decode({"inputs": [tensor]}, model)


@pytest.mark.parametrize(
    ("data", "index", "message"),
    [
        ([True, 1, 1, 1, 20, 3, 1, 1], 0, "BASKET_SIZE: must be an integer code in [0, 3]"),
        ([4, 1, 1, 1, 20, 3, 1, 1], 0, "BASKET_SIZE: must be an integer code in [0, 3]"),
        ([1, 1, 1, 1, 20, [3], 1, 1], 5, "QUANTITY: must be a finite number greater than 0"),
        ([1, 1, 1, 1, 20, 3, 1, -1], 7, "PROD_CODE_30: must be an integer code in [0, "),
        ([1, 1, 1, 1, 20, 3, 1, 1] + [1, 1, 1, 1, 20, 0, 1, 1], 13, "QUANTITY: must be a finite"),
    ],
)
def test_the_first_bad_tensor_value_is_named_by_its_place(
    data: list[Any], index: int, message: str, model: Model
) -> None:
    rows = len(data) // len(FEATURE_NAMES)
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [rows, 8], "data": data}
    with pytest.raises(InvalidInput) as caught:
        decode({"inputs": [tensor]}, model)
    assert caught.value.errors[0]["loc"] == ["inputs", 0, "data", index]
    assert caught.value.errors[0]["msg"].startswith(message)


def test_unknown_and_highest_codes_are_valid_tensor_values(model: Model) -> None:
    encoded = model.encoder.encode_row(EXAMPLE)
    unknown = [
        float(UNKNOWN_CODE) if feature.is_categorical else value
        for feature, value in zip(model.schema.features, encoded, strict=True)
    ]
    highest = [3.0, *unknown[1:]]  # BASKET_SIZE's last code: S, M, L and unknown make four
    tensor = {"name": "input-0", "datatype": "FP32", "shape": [2, 8], "data": [unknown, highest]}
    request = decode({"inputs": [tensor]}, model)
    np.testing.assert_array_equal(request.features, np.asarray([unknown, highest], np.float32))


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"inputs": []},
        {"inputs": "x"},
        {"inputs": [1]},
        {"inputs": [{"name": "BASKET_SIZE", "datatype": "BYTES", "shape": [1], "data": ["M"]}, 1]},
        {"inputs": [], "id": 3},
    ],
)
def test_malformed_requests_are_refused(payload: Any, model: Model) -> None:
    with pytest.raises(InvalidInput):
        decode(payload, model)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_in_named_inputs_name_the_input_and_row(
    literal: bytes, model: Model
) -> None:
    raw = orjson.dumps({"inputs": named_inputs([EXAMPLE, {**EXAMPLE, "SPEND": 7.25}])})
    raw = raw.replace(b"[7.25]", b"[" + literal + b"]")
    assert literal in raw
    with pytest.raises(InvalidInput) as caught:
        oip.decode_infer(raw, model.encoder, 100)
    spend = FEATURE_NAMES.index("SPEND")
    assert caught.value.errors == [
        {
            "loc": ["inputs", spend, "data", 1],
            "msg": "SPEND: Input should be a finite number",
            "type": "finite_number",
        }
    ]
    assert not caught.value.too_large


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_in_a_tensor_name_the_value(literal: bytes, model: Model) -> None:
    spend = FEATURE_NAMES.index("SPEND")
    data = b",".join([b"1"] * spend + [literal] + [b"1"] * (len(FEATURE_NAMES) - spend - 1))
    raw = b'{"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 8], "data": [%s]}]}'
    with pytest.raises(InvalidInput) as caught:
        oip.decode_infer(raw % data, model.encoder, 100)
    assert caught.value.errors[0]["loc"] == ["inputs", 0, "data", spend]
    assert caught.value.errors[0]["msg"] == "SPEND: must be a finite number greater than 0"


@pytest.mark.parametrize("body", [b'{"inputs": [', b"\xff\xfe", b"[" * 100_000 + b"NaN"])
def test_broken_json_is_still_invalid_json(body: bytes, model: Model) -> None:
    with pytest.raises(InvalidInput) as caught:
        oip.decode_infer(body, model.encoder, 100)
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [(["body"], "json_invalid")]


def test_too_many_rows_is_too_large(model: Model) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode({"inputs": named_inputs([EXAMPLE] * 5)}, model, max_rows=4)
    assert caught.value.errors[0]["type"] == "too_long"
    assert caught.value.too_large  # the flag that answers 413 rather than 422


def test_infer_response_carries_probabilities_and_labels(model: Model) -> None:
    request = decode({"id": "x", "inputs": named_inputs([EXAMPLE])}, model)
    assert isinstance(request.features, list)  # one row, as the micro-batcher takes it
    probabilities = model.predict_proba(np.asarray([request.features], dtype=np.float32))
    response = oip.infer_response("price-sensitivity", model, request, probabilities.tolist())
    assert response["id"] == "x" and response["model_version"] == model.version
    by_name = {output["name"]: output for output in response["outputs"]}
    assert by_name["probabilities"]["shape"] == [1, 3]
    assert by_name["probabilities"]["data"] == pytest.approx(probabilities.ravel().tolist())
    winner = model.classes[int(probabilities.argmax())]
    assert by_name["prediction"]["data"] == [winner]


def test_a_one_row_tensor_is_the_row_as_floats(model: Model) -> None:
    encoded = model.encoder.encode_row(EXAMPLE)
    as_sent = [int(value) if value.is_integer() else value for value in encoded]  # codes as ints
    for data in (as_sent, [as_sent]):  # flat or nested, as clients send it
        tensor = {"name": "input-0", "datatype": "FP32", "shape": [1, 8], "data": data}
        request = decode({"inputs": [tensor]}, model)
        assert request.features == encoded
        assert all(type(value) is float for value in request.features)


def test_many_rows_probabilities_are_one_flat_row_major_list(model: Model) -> None:
    request = decode({"inputs": named_inputs([EXAMPLE] * 2)}, model)
    rows = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]
    response = oip.infer_response("price-sensitivity", model, request, rows)
    probabilities = response["outputs"][0]
    assert probabilities["shape"] == [2, 3]
    assert probabilities["data"] == [0.5, 0.3, 0.2, 0.1, 0.6, 0.3]


def test_labels_are_the_first_of_equal_maxima_as_numpy_argmax(model: Model) -> None:
    request = decode({"inputs": named_inputs([EXAMPLE] * 2)}, model)
    tied = [[0.4, 0.4, 0.2], [0.1, 0.45, 0.45]]
    response = oip.infer_response("price-sensitivity", model, request, tied)
    labels = response["outputs"][1]["data"]
    assert labels == [model.classes[int(i)] for i in np.asarray(tied).argmax(axis=1)]


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": [{"name": ["x"], "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
        {"inputs": [{"name": "input-0", "datatype": ["FP32"], "shape": [1, 8], "data": []}]},
        {"inputs": [{"name": "BASKET_SIZE", "datatype": {}, "shape": [1], "data": ["M"]}]},
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": "x", "data": 1}]},
        {"inputs": [{}], "outputs": 0.5},
        {"inputs": [{}], "outputs": [{"name": ["probabilities"]}]},
    ],
)
def test_wrongly_typed_fields_are_invalid_input_not_a_crash(payload: Any, model: Model) -> None:
    # Found by fuzzing the OpenAPI schema: these used to raise TypeError (a 500).
    with pytest.raises(InvalidInput):
        decode(payload, model)


def test_an_empty_outputs_list_asks_for_every_output(model: Model) -> None:
    request = decode({"inputs": named_inputs([EXAMPLE]), "outputs": []}, model)
    assert request.outputs == oip.OUTPUTS
