"""Request and response shapes of /predict and /predict/batch, and their validation.

Requests are validated straight from the body bytes by pydantic-core (one pass, no
intermediate objects), into TypedDicts. Every problem becomes a 422 whose ``loc`` names the
row and the field; NaN and Infinity are refused, as are numbers float32 cannot hold. Fields
beyond the eight features (an id, say) are ignored. Closed domains (``BASKET_SIZE``,
``STORE_FORMAT``) are enforced; any other category value is accepted and, if the model never
saw it, encoded as unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from retail_serving.model import Probabilities

MAX_REPORTED_ERRORS = 20

Category = Annotated[str, Field(strict=True, min_length=1, max_length=64)]
Spend = Annotated[float, Field(strict=True, gt=0, le=1e9, allow_inf_nan=False)]
Quantity = Annotated[float, Field(strict=True, gt=0, le=1e6, allow_inf_nan=False)]


class PredictRequest(TypedDict):
    """One basket, in the seed's shape (dunnhumby column names)."""

    BASKET_SIZE: Literal["S", "M", "L"]
    BASKET_TYPE: Category
    STORE_REGION: Category
    STORE_FORMAT: Literal["SS", "MS", "LS", "XLS"]
    SPEND: Spend
    QUANTITY: Quantity
    PROD_CODE_20: Category
    PROD_CODE_30: Category


class Prediction(TypedDict):
    prediction: str
    probability: dict[str, float]
    confidence: float
    model_version: str


class BatchPrediction(TypedDict):
    predictions: list[Prediction]
    count: int


ROW = TypeAdapter(PredictRequest)
ROWS = TypeAdapter(list[PredictRequest])  # for rows assembled from other shapes
EXAMPLE: PredictRequest = {
    "BASKET_SIZE": "M",
    "BASKET_TYPE": "Full Shop",
    "STORE_REGION": "E02",
    "STORE_FORMAT": "LS",
    "SPEND": 23.5,
    "QUANTITY": 9,
    "PROD_CODE_20": "DEP00012",
    "PROD_CODE_30": "G00003",
}


class InvalidInput(ValueError):
    """Input the API refuses; ``errors`` are FastAPI-style ``{loc, msg, type}`` entries."""

    def __init__(self, errors: list[dict[str, Any]], *, too_large: bool = False) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors
        self.too_large = too_large


def _invalid(error: ValidationError, prefix: Sequence[str | int] = ("body",)) -> InvalidInput:
    details = error.errors(include_url=False, include_input=False, include_context=False)
    errors = [
        {"loc": [*prefix, *detail["loc"]], "msg": detail["msg"], "type": detail["type"]}
        for detail in details[:MAX_REPORTED_ERRORS]
    ]
    return InvalidInput(errors, too_large=any(e["type"] == "too_long" for e in details))


def parse_one(body: bytes) -> PredictRequest:
    try:
        return ROW.validate_json(body)
    except ValidationError as error:
        raise _invalid(error) from None


class BatchParser:
    """Parses /predict/batch bodies, stopping as soon as a list exceeds ``max_rows``."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._adapter = TypeAdapter(
            Annotated[list[PredictRequest], Field(min_length=1, max_length=max_rows)]
        )

    def parse(self, body: bytes) -> list[PredictRequest]:
        try:
            return self._adapter.validate_json(body)
        except ValidationError as error:
            raise _invalid(error) from None


def validate_rows(
    rows: list[dict[str, Any]], locate: Callable[[int, str], list[str | int]]
) -> None:
    """Apply the per-row rules to rows built from another shape (v2 named inputs);
    ``locate(row, field)`` says where that value was in the original request. That place
    need not name the field (a v2 input is an index), so each message starts with it."""
    try:
        ROWS.validate_python(rows)
    except ValidationError as error:
        details = error.errors(include_url=False, include_input=False, include_context=False)
        errors = []
        for detail in details[:MAX_REPORTED_ERRORS]:
            row, *rest = detail["loc"]
            if rest:
                place, message = locate(int(row), str(rest[0])), f"{rest[0]}: {detail['msg']}"
            else:
                place, message = ["inputs"], detail["msg"]
            errors.append({"loc": place, "msg": message, "type": detail["type"]})
        raise InvalidInput(errors) from None


def prediction(probabilities: list[float], classes: Sequence[str], version: str) -> Prediction:
    """One row's answer; ``probabilities`` are already rounded, in ``classes`` order."""
    winner = max(range(len(probabilities)), key=probabilities.__getitem__)
    return {
        "prediction": classes[winner],
        "probability": dict(zip(classes, probabilities, strict=True)),
        "confidence": probabilities[winner],
        "model_version": version,
    }


def predictions(
    probabilities: Probabilities, classes: Sequence[str], version: str
) -> list[Prediction]:
    """Many rows' answers, the same as ``prediction`` row by row but vectorised as far as the
    per-row dicts (this is most of the cost of a large batch outside the model itself)."""
    values = probabilities.astype(np.float64).round(6)
    winners = values.argmax(axis=1)
    labels = [classes[winner] for winner in winners.tolist()]
    confidences = values[np.arange(len(values)), winners].tolist()
    columns = [values[:, column].tolist() for column in range(values.shape[1])]
    return [
        {
            "prediction": label,
            "probability": dict(zip(classes, row, strict=True)),
            "confidence": confidence,
            "model_version": version,
        }
        for label, row, confidence in zip(
            labels, zip(*columns, strict=True), confidences, strict=True
        )
    ]
