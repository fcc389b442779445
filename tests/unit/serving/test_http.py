"""The HTTP edge: one map from domain errors to answers, the same on every route, and answers
in the shapes the OpenAPI document declares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from retail_serving import hotpath
from retail_serving.admission import BodyBudget
from retail_serving.app import Apps, create_apps
from retail_serving.errors import NoModel, UnknownModel
from retail_serving.http import BodyTooLarge, ClientGone, error_answer, read_body
from retail_serving.model import Model
from retail_serving.payloads import EXAMPLE, InvalidInput
from retail_serving.settings import ServingSettings

V2 = "/v2/models/price-sensitivity"
REFUSAL = [{"loc": ["body", "SPEND"], "msg": "bad", "type": "value_error"}]
CHUNK = {"type": "http.request", "body": b"x" * 50, "more_body": True}


@pytest.fixture
def apps(tmp_path: Path, model_bytes: bytes) -> Apps:
    (tmp_path / "model.ubj").write_bytes(model_bytes)
    return create_apps(ServingSettings(model_uri=str(tmp_path / "model.ubj")))


@pytest.fixture
def client(apps: Apps) -> Iterator[TestClient]:
    with TestClient(apps.api) as c:
        yield c


@pytest.fixture
def admin(apps: Apps, client: TestClient) -> TestClient:
    return TestClient(apps.admin)


@pytest.mark.parametrize(
    ("error", "path", "status", "body"),
    [
        (InvalidInput(REFUSAL), "/predict", 422, {"detail": REFUSAL}),
        (InvalidInput(REFUSAL, too_large=True), "/predict/batch", 413, {"detail": REFUSAL}),
        (
            InvalidInput(REFUSAL),
            f"{V2}/infer",
            422,
            {"error": "body.SPEND: bad", "detail": REFUSAL},
        ),
        (NoModel(), "/model/info", 503, {"detail": "no verified model is loaded yet"}),
        (UnknownModel("x"), "/v2/models/x", 404, {"error": "model x is not served here"}),
        (BodyTooLarge(10), "/predict", 413, {"detail": "request body exceeds 10 bytes"}),
        (
            ClientGone(),
            "/predict",
            400,
            {"detail": "the client went away before sending the whole body"},
        ),
    ],
)
def test_each_domain_error_has_one_answer(
    error: Exception, path: str, status: int, body: Any
) -> None:
    assert error_answer(error, path) == (status, body)


def test_anything_else_is_not_a_domain_error() -> None:
    assert error_answer(RuntimeError("surprise"), "/predict") is None


def test_without_a_model_every_route_that_needs_one_answers_the_same(tmp_path: Path) -> None:
    apps = create_apps(ServingSettings(model_uri=str(tmp_path / "absent.ubj")))
    with TestClient(apps.api) as client:
        answers = [
            client.post("/predict", json=EXAMPLE),
            client.post("/predict/batch", json=[EXAMPLE]),
            client.post(f"{V2}/infer", json={"inputs": []}),
            TestClient(apps.admin).get("/model/info"),
            client.get(V2),
            client.get(f"{V2}/ready"),
        ]
    assert {(a.status_code, a.text) for a in answers} == {
        (503, '{"detail":"no verified model is loaded yet"}')
    }


def test_an_unexpected_error_on_a_prediction_route_is_a_logged_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hotpath, "parse_one", broken)
    with caplog.at_level(logging.ERROR, "retail_serving"):
        response = client.post("/predict", json=EXAMPLE)
    assert (response.status_code, response.json()) == (500, {"detail": "internal error"})
    assert "a bug" not in response.text
    assert any("unexpected error answering /predict" in r.getMessage() for r in caplog.records)


def test_every_json_answer_has_the_shape_the_document_declares(
    client: TestClient, admin: TestClient, model: Model
) -> None:
    tensor = {"name": "t", "datatype": "FP32", "shape": [1, 8]}
    encoded = {"id": "7", "inputs": [{**tensor, "data": model.encoder.encode_row(EXAMPLE)}]}
    requests: list[tuple[TestClient, str, str, Any]] = [
        (client, "get", "/health", None),
        (client, "get", "/ready", None),
        (admin, "get", "/model/info", None),  # the metrics port's own document
        (client, "get", "/v2/health/live", None),
        (client, "get", "/v2/health/ready", None),
        (client, "get", V2, None),
        (client, "get", f"{V2}/ready", None),
        (client, "post", "/predict", EXAMPLE),
        (client, "post", "/predict/batch", [EXAMPLE, {**EXAMPLE, "STORE_REGION": "new"}]),
        (client, "post", f"{V2}/infer", encoded),
    ]
    for port, method, path, body in requests:
        document = port.get("/openapi.json").json()
        response = port.request(method, path, json=body)
        assert response.status_code == 200, path
        operation = document["paths"][path.replace(V2, "/v2/models/{name}")]
        declared = operation[method]["responses"]["200"]["content"]["application/json"]["schema"]
        schema = {**declared, "components": document["components"]}
        jsonschema.validate(response.json(), schema)


def test_a_bodys_bytes_are_given_back_however_its_request_ends(
    apps: Apps, client: TestClient
) -> None:
    budget = apps.admin.state.services.bodies  # type: ignore[attr-defined]
    client.post("/predict", json=EXAMPLE)  # answered
    client.post("/predict", json={"SPEND": "x"})  # refused
    client.post("/predict", content=b" " * (20 << 20))  # over MAX_BODY_BYTES, declared
    client.post("/v2/models/elsewhere/infer", json={"inputs": []})  # another model
    assert budget.held == 0


def test_a_body_over_the_budget_is_shed_with_retry_after_and_not_counted_as_the_routes(
    tmp_path: Path, model_bytes: bytes
) -> None:
    (tmp_path / "model.ubj").write_bytes(model_bytes)
    settings = ServingSettings(
        model_uri=str(tmp_path / "model.ubj"), max_body_bytes=2048, max_body_bytes_in_flight=2048
    )
    apps = create_apps(settings)
    with TestClient(apps.api) as client:
        apps.admin.state.services.bodies.take(1024)  # type: ignore[attr-defined]  # held elsewhere
        shed = client.post("/predict/batch", json=[EXAMPLE] * 8)  # about 1.8 KB
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert "bytes of request bodies" in shed.json()["detail"]
        text = TestClient(apps.admin).get("/metrics").text
    assert 'retail_http_shed_total{reason="body_bytes"} 1.0' in text
    assert 'status="503"' not in text


@pytest.mark.parametrize(
    ("last", "refusal"),
    [({"type": "http.disconnect"}, ClientGone), (CHUNK | {"body": b"x" * 901}, BodyTooLarge)],
)
def test_a_refused_body_gives_back_the_bytes_it_took(
    last: dict[str, Any], refusal: type[Exception]
) -> None:
    budget = BodyBudget(1 << 20, lambda _reason: None)
    messages = iter([CHUNK, CHUNK, last])

    async def receive() -> dict[str, Any]:
        return next(messages)

    with pytest.raises(refusal):
        asyncio.run(read_body({"headers": []}, receive, 1000, budget))  # type: ignore[arg-type]
    assert budget.held == 0
