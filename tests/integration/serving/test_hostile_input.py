"""Hostile input over the wire, to one real predictor (uvicorn, a model from a local file):
oversized bodies (declared or streamed), oversized batches, malformed JSON, NaN and Infinity,
huge strings, deep nesting; then schemathesis fuzzes every route in the predictor's OpenAPI
document. Never a 5xx, always an answer in the documented shape, and the server stays healthy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from retail_serving import artifact
from retail_serving.payloads import EXAMPLE
from retail_training import training

from .conftest import PredictorProcess, launch, stop

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_ROWS = 100
FUZZ_EXAMPLES = 30  # per operation: enough to find the 500 fixed in d95ae0d, seconds in all


# The Open Inference Protocol's request schema describes the protocol, not this model: any
# input name, shape and data are schema-valid, yet the server rightly refuses names that are
# not its features or data that does not fill the shape (422, the field named). So "a
# schema-valid request is accepted" cannot hold; everything else schemathesis checks does.
LOOSER_THAN_THE_SERVER = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module")
def predictor(
    tmp_path_factory: pytest.TempPathFactory, trained: training.TrainedModel
) -> Iterator[PredictorProcess]:
    directory = tmp_path_factory.mktemp("hostile")
    model = directory / "model.ubj"
    artifact.write(model, trained.booster, trained.encoder, "hostile")
    env = {"MAX_BODY_BYTES": str(MAX_BODY_BYTES), "MAX_BATCH_ROWS": str(MAX_BATCH_ROWS)}
    process = launch(str(model), directory / "predictor.log", env)
    try:
        yield process
    finally:
        stop(process)


def post_raw(
    predictor: PredictorProcess, path: str, content: Any, **headers: str
) -> httpx.Response:
    return httpx.post(
        predictor.url + path,
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    """A body streamed without a Content-Length (chunked), so only counting can stop it."""
    yield b"["
    sent = 1
    while sent < total:
        yield b" " * size
        sent += size
    yield b"]"


HUGE_STRING = "x" * (MAX_BODY_BYTES - 1024)
V2_INFER = "/v2/models/price-sensitivity/infer"
V2_INFER_TEMPLATE = "/v2/models/{name}/infer"
HOSTILE: dict[str, tuple[str, Any, set[int]]] = {
    "declared body too large": ("/predict", b"{" + b" " * (2 * MAX_BODY_BYTES) + b"}", {413}),
    "streamed body too large": ("/predict/batch", chunks(4 * MAX_BODY_BYTES), {413}),
    "v2 body too large": (V2_INFER, b" " * (2 * MAX_BODY_BYTES), {413}),
    "batch over the row cap": ("/predict/batch", [EXAMPLE] * (MAX_BATCH_ROWS + 1), {413}),
    "malformed JSON": ("/predict", b'{"BASKET_SIZE": "M",', {422}),
    "not JSON at all": ("/predict", b"\xff\xfe\x00garbage", {422}),
    "a list for a row": ("/predict", [EXAMPLE], {422}),
    "NaN": ("/predict", b'{"SPEND": NaN}', {422}),
    "Infinity in a batch": ("/predict/batch", b'[{"SPEND": Infinity}]', {422}),
    "-Infinity in v2": (V2_INFER, b'{"inputs": [{"data": [-Infinity]}]}', {422}),
    "huge string in a category": ("/predict", {**EXAMPLE, "BASKET_TYPE": HUGE_STRING}, {422}),
    "huge string for a number": ("/predict", {**EXAMPLE, "SPEND": HUGE_STRING}, {422}),
    "huge field name": ("/predict", {**EXAMPLE, HUGE_STRING: 1}, {200}),
    "deeply nested": ("/predict", b"[" * 10_000 + b"]" * 10_000, {422}),
    "wrong content type": ("/predict", b"BASKET_SIZE=M", {422}),
}


@pytest.mark.parametrize(("path", "body", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_refused_or_handled_never_a_500(
    predictor: PredictorProcess, path: str, body: Any, expected: set[int]
) -> None:
    content = body if isinstance(body, bytes | Iterator) else None
    response = (
        post_raw(predictor, path, content)
        if content is not None
        else httpx.post(predictor.url + path, json=body, timeout=30)
    )
    assert response.status_code in expected, response.text[:500]
    answer = response.json()
    assert "detail" in answer or "error" in answer or "prediction" in answer
    assert predictor.post("/predict", EXAMPLE).status_code == 200  # and it is still serving


def test_an_oversized_answer_names_the_limit(predictor: PredictorProcess) -> None:
    response = post_raw(predictor, "/predict", b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.json()["detail"]


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_undocumented_answer(
    predictor: PredictorProcess,
) -> None:
    """Every operation, valid and invalid inputs drawn from its schema; all schemathesis checks
    (no server error, status code, content type and body as documented, ...). Driven through
    hypothesis directly: schemathesis' pytest plugin does not run under pytest 9."""
    openapi = schemathesis.openapi.from_url(predictor.url + "/openapi.json")
    operations = []
    for result in openapi.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is broken
        operations.append(result.ok())
    assert {"POST /predict", "POST /predict/batch", f"POST {V2_INFER_TEMPLATE}"} <= {
        operation.label for operation in operations
    }
    failures: dict[str, str] = {}
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,  # no example database in the work tree
            derandomize=True,  # the same examples on every run: a failure here is reproducible
        )
        def fuzz(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(timeout=30, excluded_checks=LOOSER_THAN_THE_SERVER)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to make invalid: no input, or any string will do
            assert mode is GenerationMode.NEGATIVE
        except (AssertionError, FailureGroup) as failure:  # every operation's, not the first
            failures[f"{operation.label} ({mode.value})"] = "; ".join(
                str(error)[:1500] for error in getattr(failure, "exceptions", [failure])
            )
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    assert predictor.post("/predict", EXAMPLE).status_code == 200
