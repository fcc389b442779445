"""The HTTP surface of the predictor, in process, serving a model from a local file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from retail_contract.metrics import PREDICTION_ROUTES
from retail_serving.app import Apps, create_apps
from retail_serving.hotpath import PredictionRoute
from retail_serving.model import Model
from retail_serving.payloads import EXAMPLE
from retail_serving.schema import FEATURE_NAMES
from retail_serving.settings import ServingSettings


def apps_for(model_uri: Path, **settings: Any) -> Apps:
    return create_apps(ServingSettings(model_uri=str(model_uri), max_batch_rows=50, **settings))


def client_for(model_uri: Path, **settings: Any) -> TestClient:
    return TestClient(apps_for(model_uri, **settings).api)


@pytest.fixture
def apps(tmp_path: Path, model_bytes: bytes) -> Apps:
    (tmp_path / "model.ubj").write_bytes(model_bytes)
    return apps_for(tmp_path / "model.ubj")


@pytest.fixture
def client(apps: Apps) -> Iterator[TestClient]:
    """The API port; its lifespan has loaded the model."""
    with TestClient(apps.api) as test_client:
        yield test_client


@pytest.fixture
def admin(apps: Apps, client: TestClient) -> TestClient:
    """The metrics port, over the same model and metrics as ``client``."""
    return TestClient(apps.admin)


def test_liveness_readiness_and_model_info(
    client: TestClient, admin: TestClient, model: Model
) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/ready").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    info = admin.get("/model/info").json()
    assert info["version"] == model.version and info["sha256"] == model.sha256
    assert [f["name"] for f in info["features"]] == list(FEATURE_NAMES)
    assert info["classes"] == ["Low", "Medium", "High"]
    assert info["source_uri"].endswith("model.ubj") and info["loaded_at"]


def test_without_a_model_the_server_lives_but_is_not_ready(tmp_path: Path) -> None:
    with client_for(tmp_path / "absent.ubj") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/predict", json=EXAMPLE).status_code == 503


def test_predict_matches_the_model(client: TestClient, model: Model) -> None:
    response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 200
    body = response.json()
    expected = model.predict_proba(model.encoder.encode_rows([EXAMPLE]))[0]
    assert list(body["probability"]) == ["Low", "Medium", "High"]
    assert list(body["probability"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert body["prediction"] == model.classes[int(expected.argmax())]
    assert body["confidence"] == max(body["probability"].values())
    assert body["model_version"] == model.version


def test_batch_equals_singles_including_unseen_categories(client: TestClient) -> None:
    rows = [EXAMPLE, {**EXAMPLE, "STORE_REGION": "Atlantis", "PROD_CODE_20": "DEP77777"}]
    batch = client.post("/predict/batch", json=rows).json()
    assert batch["count"] == 2
    assert batch["predictions"] == [client.post("/predict", json=row).json() for row in rows]


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/predict", {**EXAMPLE, "SPEND": -1}, "SPEND"),
        ("/predict", {**EXAMPLE, "STORE_FORMAT": "HUGE"}, "STORE_FORMAT"),
        ("/predict/batch", [EXAMPLE, {**EXAMPLE, "QUANTITY": None}], "QUANTITY"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, path: str, payload: Any, field: str
) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]


def test_nan_is_422_not_500(client: TestClient) -> None:
    body = b'{"BASKET_SIZE":"M","SPEND":NaN}'
    response = client.post("/predict", content=body)
    assert response.status_code == 422
    assert ["body", "SPEND"] in [error["loc"] for error in response.json()["detail"]]


def test_batch_over_the_row_cap_is_413(client: TestClient) -> None:
    assert client.post("/predict/batch", json=[EXAMPLE] * 51).status_code == 413
    assert client.post("/predict/batch", json=[EXAMPLE] * 50).status_code == 200


def test_an_oversized_body_is_413(tmp_path: Path, model_bytes: bytes) -> None:
    (tmp_path / "model.ubj").write_bytes(model_bytes)
    with client_for(tmp_path / "model.ubj", max_body_bytes=2048) as client:
        response = client.post("/predict", content=b" " * 4096)
        assert response.status_code == 413


def test_v2_metadata_infer_and_unknown_model(client: TestClient, model: Model) -> None:
    metadata = client.get("/v2/models/price-sensitivity").json()
    assert metadata["versions"] == [model.version]
    assert [i["name"] for i in metadata["inputs"]] == list(FEATURE_NAMES)
    assert client.get("/v2/models/other").status_code == 404
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "shape": [1],
            "data": [value],
        }
        for name, value in EXAMPLE.items()
    ]
    answer = client.post("/v2/models/price-sensitivity/infer", json={"inputs": inputs}).json()
    single = client.post("/predict", json=EXAMPLE).json()
    probabilities = answer["outputs"][0]["data"]
    assert probabilities == pytest.approx(list(single["probability"].values()), abs=1e-6)
    tensor = {
        "name": "input-0",
        "datatype": "FP32",
        "shape": [1, 8],
        "data": model.encoder.encode_row(EXAMPLE),
    }
    encoded = client.post("/v2/models/price-sensitivity/infer", json={"inputs": [tensor]}).json()
    assert encoded["outputs"][0]["data"] == pytest.approx(probabilities, abs=1e-6)
    bad = client.post("/v2/models/price-sensitivity/infer", json={"inputs": inputs[:3]})
    assert bad.status_code == 422 and "QUANTITY" in bad.json()["error"]


def test_metrics_and_model_info_answer_only_on_the_metrics_port(
    client: TestClient, admin: TestClient
) -> None:
    for path in ("/metrics", "/model/info"):
        assert client.get(path).status_code == 404, path
        assert admin.get(path).status_code == 200, path
    assert "/model/info" not in client.get("/openapi.json").json()["paths"]
    for path in ("/predict", "/v2/models/price-sensitivity/infer"):  # nor the reverse
        assert admin.post(path, json=EXAMPLE).status_code == 404, path
    assert admin.get("/ready").status_code == 404
    # A scrape is not API traffic: the request metrics count the API port's requests only.
    assert 'route="/metrics"' not in admin.get("/metrics").text


def test_metrics_count_requests_and_show_the_model(
    client: TestClient, admin: TestClient, model: Model
) -> None:
    client.post("/predict", json=EXAMPLE)
    client.post("/predict", json={})
    client.get("/predict")  # FastAPI's 405, under the route's template
    client.get("/health")
    client.get("/no/such/route")
    text = admin.get("/metrics").text
    assert 'retail_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'retail_http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'retail_http_requests_total{method="GET",route="/predict",status="405"} 1.0' in text
    assert 'retail_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
    assert 'retail_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    # Each request counted and timed once: three on /predict, whichever way in.
    assert 'retail_http_request_duration_seconds_count{route="/predict"} 3.0' in text
    assert f'retail_model_info{{sha256="{model.sha256}",version="{model.version}"}} 1.0' in text
    assert 'retail_model_reloads_total{outcome="ok"} 1.0' in text


def test_predictions_are_counted_by_model_version_and_predicted_class(
    client: TestClient, admin: TestClient, model: Model
) -> None:
    """What a canary's prediction shift is measured from: every predicted row, whichever
    route it came by, under the class the answer names; refused input predicts nothing."""
    answers = [client.post("/predict", json=EXAMPLE).json()["prediction"]]
    answers += [
        p["prediction"]
        for p in client.post("/predict/batch", json=[EXAMPLE] * 4).json()["predictions"]
    ]
    client.post("/predict", json={})  # 422: no prediction
    text = admin.get("/metrics").text
    for name in model.classes:  # every class, at zero when never predicted
        line = f'retail_predictions_total{{class="{name}",model_version="{model.version}"}}'
        assert f"{line} {float(answers.count(name))}" in text


def test_the_prediction_routes_are_the_ones_the_operator_reads(client: TestClient) -> None:
    router = client.app.app  # inside admission
    paths = {route.path for route in router.routes if isinstance(route, PredictionRoute)}
    assert paths == PREDICTION_ROUTES


def test_the_try_it_page_and_openapi_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text and "BASKET_SIZE" in page.text
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "SPEND" in body["schema"]["properties"]
    batch = paths["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert "At most 50 rows" in batch["schema"]["description"]
    assert "inputs" in str(paths["/v2/models/{name}/infer"]["post"]["requestBody"])
    assert {"/health", "/ready", "/v2/health/ready"} <= set(paths)


def test_the_app_serves_batches_again_after_a_restart_of_its_lifespan(
    tmp_path: Path, model_bytes: bytes
) -> None:
    (tmp_path / "model.ubj").write_bytes(model_bytes)
    app = create_apps(ServingSettings(model_uri=str(tmp_path / "model.ubj"))).api
    for _ in range(2):  # the worker threads used to be gone after the first shutdown
        with TestClient(app) as client:
            response = client.post("/predict/batch", json=[EXAMPLE] * 3)
            assert response.status_code == 200 and response.json()["count"] == 3


def test_one_router_sends_prediction_posts_to_their_routes_and_the_rest_to_fastapi(
    client: TestClient, admin: TestClient
) -> None:
    assert client.post("/predict", json=EXAMPLE).status_code == 200
    assert client.post("/v2/models/elsewhere/infer", json={"inputs": []}).status_code == 404
    other_method = client.get("/predict")  # not the prediction route: FastAPI's answer
    assert other_method.status_code == 405
    assert other_method.json() == {"detail": "Method Not Allowed"}
    assert client.get("/nowhere").status_code == 404
    text = admin.get("/metrics").text
    assert 'route="/predict",status="200"' in text
    assert 'route="/predict",status="405"' in text
    assert 'route="/v2/models/{name}/infer",status="404"' in text


def test_the_model_limit_follows_the_cgroups_memory_unless_told_the_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retail_serving import app

    monkeypatch.setattr(app, "cgroup_memory_limit", lambda: 1 << 30)
    settings = ServingSettings(model_uri=str(tmp_path / "model.ubj"))
    assert app.model_limit(settings).rule == "(memory limit 1,024 MiB - 192 MiB) / 5"
    told = ServingSettings(model_uri=str(tmp_path / "model.ubj"), memory_limit_bytes=768 << 20)
    assert app.model_limit(told).rule == "(memory limit 768 MiB - 192 MiB) / 5"
    monkeypatch.setattr(app, "cgroup_memory_limit", lambda: None)
    assert app.model_limit(settings).bytes == settings.max_model_bytes


def test_rows_are_counted_in_the_references_bins_beside_the_reference(
    client: TestClient, admin: TestClient, model: Model
) -> None:
    """What drift is measured from: every row in its feature's bin (single requests, counted
    row by row, and a batch, counted with numpy, alike), next to the model's hold-out."""
    assert model.reference is not None
    client.post("/predict", json=EXAMPLE)
    client.post("/predict/batch", json=[EXAMPLE] * 20)
    samples = {
        (s.name, s.labels.get("feature", ""), s.labels.get("bin") or s.labels.get("class")): s
        for family in text_string_to_metric_families(admin.get("/metrics").text)
        for s in family.samples
        if s.labels.get("model_version") == model.version
    }
    fmt = str(EXAMPLE["STORE_FORMAT"])
    assert samples["retail_feature_rows_total", "STORE_FORMAT", fmt].value == 21
    assert samples["retail_feature_rows_total", "STORE_FORMAT", "<unknown>"].value == 0
    formats = next(b for b in model.reference.features if b.name == "STORE_FORMAT")
    held = formats.reference[formats.labels.index(fmt)]
    assert samples["retail_reference_feature_rows", "STORE_FORMAT", fmt].value == held
    for name, rows in model.reference.predictions.items():
        assert samples["retail_reference_predictions", "", name].value == rows
