"""The Open Inference Protocol (KServe v2) shapes: request decoding, responses, metadata.

``infer`` accepts the two input conventions clients of MLServer and KServe use:

* one named input per feature, raw values (BYTES strings for categories, numbers for SPEND
  and QUANTITY), shape ``[n]`` or ``[n, 1]``: MLServer's pandas-codec convention. The values
  go through exactly the same rules as /predict.
* a single FP32 (or FP64) tensor of shape ``[n, 8]`` holding already-encoded features in
  schema order, as MLServer's XGBoost runtime takes them; the codes must be valid for the
  model's vocabularies (0 is unknown). pydantic-core checks every value in one call, against
  rules made once per model's code limits (``_tensor_validators``).

A one-row request decodes to a list of floats, which the micro-batcher stacks with other
requests' rows, and its answer is built from lists: for a single row, numpy's per-call cost
(an array made, reshaped, taken apart again, an ``argmax``) was most of the difference
between this route and ``/predict`` (docs/performance.md).

Problems are reported as 422 with the offending input named (``loc``), NaN and Infinity
included: JSON has no such numbers, but clients (numpy, Python's ``json``) send them.

The answers' shapes are TypedDicts (``InferResponse``, ``ModelMetadata``): mypy holds the
builders to them, and the OpenAPI document describes them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, NamedTuple, NotRequired

import numpy as np
import orjson
from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from retail_serving.encoding import Encoder, Matrix
from retail_serving.model import Model
from retail_serving.payloads import InvalidInput, validate_rows

NUMERIC_TYPES = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)
TENSOR_TYPES = frozenset({"FP32", "FP64"})
FLOAT32_MAX = float(np.finfo(np.float32).max)
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_PREDICTION = "prediction"
OUTPUTS = (OUTPUT_PROBABILITIES, OUTPUT_PREDICTION)
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string", "examples": ["BYTES", "FP32", "FP64"]},
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"enum": list(OUTPUTS)}}},
        },
    },
}


class OutputTensor(TypedDict):
    name: str
    datatype: str
    shape: list[int]
    parameters: NotRequired[dict[str, list[str]]]
    data: list[float] | list[str]


class InferResponse(TypedDict):
    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: NotRequired[str]


class TensorMetadata(TypedDict):
    name: str
    datatype: str
    shape: list[int]


class MetadataParameters(TypedDict):
    classes: list[str]
    encoded_tensor_input: dict[str, Any]
    vocabularies: dict[str, list[str]]
    unknown_code: int


class ModelMetadata(TypedDict):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: MetadataParameters


class InferRequest(NamedTuple):  # a NamedTuple: a third of a frozen dataclass's cost to make
    id: str | None
    features: list[float] | Matrix  # one row's features, or the matrix of several rows
    outputs: tuple[str, ...]


def _fail(loc: list[str | int], message: str, kind: str = "value_error") -> InvalidInput:
    return InvalidInput([{"loc": loc, "msg": message, "type": kind}], too_large=kind == "too_long")


def _text(value: Any) -> str | None:
    """A field that must be a string, or None (never an unhashable surprise)."""
    return value if isinstance(value, str) else None


def _flatten(data: Any, loc: list[str | int], name: str) -> list[Any]:
    """``data`` as one flat list; ``name`` is the input's, for the messages."""
    if not isinstance(data, list):
        raise _fail(loc, f"{name}: data must be a list")
    kinds = set(map(type, data))  # JSON arrays decode to plain lists, never subclasses
    if list not in kinds:
        return data
    if kinds != {list}:
        raise _fail(loc, f"{name}: data mixes nested and flat values")
    return [value for item in data for value in item]


def _encoded_value(limit: int | None) -> Any:
    """One encoded value's rule: an integer code in ``[0, limit)``, or for a numeric column
    (``None``) a finite number above 0 that float32 can hold. JSON integers count as numbers,
    booleans and strings do not."""
    if limit is None:
        return Annotated[float, Field(strict=True, gt=0, le=FLOAT32_MAX, allow_inf_nan=False)]
    return Annotated[float, Field(strict=True, ge=0, lt=limit, multiple_of=1)]


class _Validators(NamedTuple):
    row: TypeAdapter[tuple[float, ...]]  # one row's values
    rows: TypeAdapter[list[tuple[float, ...]]]  # a list of rows


@lru_cache(maxsize=8)
def _tensor_validators(limits: tuple[int | None, ...]) -> _Validators:
    """The validators of encoded rows for a model with these code limits (models of one
    training set share them, so a reload rarely builds new ones). pydantic-core checks every
    value in one pass and hands back floats: a third of the CPU time of the same checks
    written as a Python loop over a one-row tensor, and far less for many rows. A one-row
    tensor is checked as one row, not as a list of one (0.1 µs less)."""
    row: Any = tuple[tuple(_encoded_value(limit) for limit in limits)]  # type: ignore[misc]
    return _Validators(TypeAdapter(row), TypeAdapter(list[row]))


def _tensor_problem(error: ValidationError, encoder: Encoder, *, one_row: bool) -> InvalidInput:
    """The first value ``error`` found wrong, named by its place in the flat data."""
    loc = error.errors(include_url=False)[0]["loc"]
    row, column = (0, loc[0]) if one_row else loc[:2]
    assert isinstance(row, int) and isinstance(column, int)  # list and tuple positions
    width = len(encoder.code_limits)
    limit = encoder.code_limits[column]
    problem = (
        "must be a finite number greater than 0"
        if limit is None
        else f"must be an integer code in [0, {limit - 1}]"
    )
    feature = encoder.schema.features[column].name
    return _fail(["inputs", 0, "data", row * width + column], f"{feature}: {problem}")


def _decode_tensor(spec: dict[str, Any], encoder: Encoder, max_rows: int) -> list[float] | Matrix:
    loc: list[str | int] = ["inputs", 0]
    shape = spec.get("shape")
    limits = encoder.code_limits
    width = len(limits)
    if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == width):
        raise _fail([*loc, "shape"], f"a tensor input must have shape [n, {width}]")
    rows = shape[0]
    if not isinstance(rows, int) or not 1 <= rows <= max_rows:
        raise _fail([*loc, "shape"], f"n must be between 1 and {max_rows}", "too_long")
    data = spec.get("data")
    # Flat data (as clients mostly send it) goes to the validator as it is: a list among the
    # values is then a value of the wrong type, named as such.
    if isinstance(data, list) and not (data and isinstance(data[0], list)):
        values = data
    else:
        values = _flatten(data, [*loc, "data"], "the tensor")
    size = rows * width
    if len(values) != size:
        raise _fail([*loc, "data"], f"expected {size} values for shape {shape}")
    validators = _tensor_validators(limits)
    try:
        if rows == 1:
            return list(validators.row.validate_python(values))
        by_row = [values[at : at + width] for at in range(0, size, width)]
        return np.asarray(validators.rows.validate_python(by_row), dtype=np.float32)
    except ValidationError as error:
        raise _tensor_problem(error, encoder, one_row=rows == 1) from None


def _decode_named(inputs: list[Any], encoder: Encoder, max_rows: int) -> Matrix:
    schema = encoder.schema
    columns: dict[str, list[Any]] = {}
    for index, spec in enumerate(inputs):
        loc: list[str | int] = ["inputs", index]
        name = _text(spec.get("name"))
        if name not in schema.names:
            raise _fail([*loc, "name"], f"unknown input {name!r}; expected {list(schema.names)}")
        if name in columns:
            raise _fail([*loc, "name"], f"input {name!r} given twice")
        feature = schema.features[schema.names.index(name)]
        datatype = _text(spec.get("datatype"))
        if feature.is_categorical and datatype != "BYTES":
            raise _fail([*loc, "datatype"], f"{name} is categorical: datatype must be BYTES")
        if not feature.is_categorical and datatype not in NUMERIC_TYPES:
            raise _fail([*loc, "datatype"], f"{name} is numeric: datatype must be FP32, INT64…")
        shape = spec.get("shape")
        if not (isinstance(shape, list) and shape and len(shape) <= 2 and shape[1:] in ([], [1])):
            raise _fail([*loc, "shape"], f"{name}: shape must be [n] or [n, 1]")
        values = _flatten(spec.get("data"), [*loc, "data"], name)
        if len(values) != shape[0]:
            raise _fail([*loc, "data"], f"{name}: expected {shape[0]} values for shape {shape}")
        columns[name] = values
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise _fail(["inputs"], f"missing inputs {missing}", "missing")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        counts = ", ".join(f"{name} {len(values)}" for name, values in columns.items())
        raise _fail(["inputs"], f"all inputs must have the same number of rows ({counts})")
    rows = lengths.pop()
    if not 1 <= rows <= max_rows:
        raise _fail(["inputs"], f"n must be between 1 and {max_rows}", "too_long")
    position = {name: index for index, name in enumerate(columns)}
    validate_rows(
        [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)],
        lambda row, field: ["inputs", position.get(field, field), "data", row],
    )
    return encoder.encode_columns(columns)


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        broken = _fail(["body"], f"invalid JSON: {error}", "json_invalid")
    # orjson follows RFC 8259, which has no NaN or Infinity. Read a body that holds them with
    # the standard library, which does, so that the value checks refuse them naming the input,
    # as /predict does; any other broken body stays "invalid JSON".
    constants: list[str] = []

    def constant(literal: str) -> float:
        constants.append(literal)
        return float(literal)

    try:
        payload = json.loads(body, parse_constant=constant)
    except (ValueError, RecursionError):
        raise broken from None
    if not constants:
        raise broken
    return payload


def decode_infer(body: bytes, encoder: Encoder, max_rows: int) -> InferRequest:
    payload = _load(body)
    if type(payload) is not dict:  # JSON decodes to plain dicts and lists, never subclasses
        raise _fail(["body"], "must be a JSON object", "dict_type")
    inputs = payload.get("inputs")
    if not (
        type(inputs) is list
        and inputs
        and (type(inputs[0]) is dict if len(inputs) == 1 else set(map(type, inputs)) == {dict})
    ):
        raise _fail(["inputs"], "must be a non-empty list of input tensors")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail(["id"], "must be a string")
    outputs: tuple[str, ...] = OUTPUTS
    wanted = payload.get("outputs")
    if wanted not in (None, []):  # none asked for means all of them
        listed = wanted if isinstance(wanted, list) else [None]
        names = [_text(o.get("name")) if isinstance(o, dict) else None for o in listed]
        if any(name not in OUTPUTS for name in names):
            raise _fail(["outputs"], f"outputs must name some of {list(OUTPUTS)}")
        outputs = tuple(name for name in OUTPUTS if name in names)
    single = inputs[0]
    features: list[float] | Matrix
    datatype, name = single.get("datatype"), single.get("name")
    if (
        len(inputs) == 1
        and type(datatype) is str
        and datatype in TENSOR_TYPES
        and not (type(name) is str and name in encoder.schema.names)
    ):
        features = _decode_tensor(single, encoder, max_rows)
    else:
        matrix = _decode_named(inputs, encoder, max_rows)
        features = matrix[0].tolist() if len(matrix) == 1 else matrix
    return InferRequest(request_id, features, outputs)


def infer_response(
    model_name: str, model: Model, request: InferRequest, probabilities: list[list[float]]
) -> InferResponse:
    """The answer to ``request``, from one list of class probabilities per row."""
    classes = model.classes
    outputs: list[OutputTensor] = []
    if OUTPUT_PROBABILITIES in request.outputs:
        outputs.append(
            {
                "name": OUTPUT_PROBABILITIES,
                "datatype": "FP32",
                "shape": [len(probabilities), len(classes)],
                "parameters": {"classes": list(classes)},
                "data": probabilities[0]
                if len(probabilities) == 1
                else [p for row in probabilities for p in row],
            }
        )
    if OUTPUT_PREDICTION in request.outputs:
        # list.index(max) is numpy's argmax: the first of equal maxima wins.
        labels = [classes[row.index(max(row))] for row in probabilities]
        outputs.append(
            {
                "name": OUTPUT_PREDICTION,
                "datatype": "BYTES",
                "shape": [len(probabilities)],
                "data": labels,
            }
        )
    response: InferResponse = {
        "model_name": model_name,
        "model_version": model.version,
        "outputs": outputs,
    }
    if request.id is not None:
        response["id"] = request.id
    return response


def model_metadata(model_name: str, model: Model) -> ModelMetadata:
    features = model.schema.features
    return {
        "name": model_name,
        "versions": [model.version],
        "platform": "xgboost",
        "inputs": [
            {"name": f.name, "datatype": "BYTES" if f.is_categorical else "FP64", "shape": [-1]}
            for f in features
        ],
        "outputs": [
            {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, len(model.classes)]},
            {"name": OUTPUT_PREDICTION, "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {
            "classes": list(model.classes),
            "encoded_tensor_input": {"datatype": "FP32", "shape": [-1, len(features)]},
            "vocabularies": {
                name: list(vocab.values) for name, vocab in model.encoder.vocabularies.items()
            },
            "unknown_code": 0,
        },
    }
