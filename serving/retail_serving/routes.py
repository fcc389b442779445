"""The predictor's FastAPI app on the API port: every route but the prediction POSTs' fast way
in, and the OpenAPI document (docs/serving.md lists the routes). ``/metrics`` and
``/model/info`` are not here but on the metrics port (``admin``).

The JSON routes declare their answers' shapes as ``response_model`` (TypedDicts, so mypy holds
the code that builds them to the same shape), for the document only: they return orjson bytes,
which FastAPI sends as they are, without validating or re-serialising them. The prediction
routes (``hotpath``) are on this app's router too, so other methods on their paths get
FastAPI's 405; FastAPI documents only its own routes, so ``_document`` adds theirs.
Domain errors become answers through ``http``, here and on the prediction routes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from retail_serving import http, oip
from retail_serving.hotpath import PredictionRoute
from retail_serving.http import NOT_READY, UNKNOWN_MODEL, json_response
from retail_serving.page import PAGE
from retail_serving.services import ServicesDep

SERIALIZATION: Literal["serialization"] = "serialization"  # the answers' schema, not a request's


class Health(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict, total=False):
    ready: bool
    model_version: str  # only while ready


class Live(TypedDict):
    live: bool


class ServerReadiness(TypedDict):
    ready: bool


class ModelReadiness(TypedDict):
    name: str
    ready: bool


def install(app: FastAPI, predictions: Sequence[PredictionRoute]) -> None:
    """Add every route and the domain error answers to ``app``; the prediction routes first."""
    app.router.routes.extend(predictions)
    http.install(app)
    _document(app, predictions)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/health", summary="Liveness: the process is up", response_model=Health)
    async def health() -> Response:
        return json_response(Health(status="ok"))

    @app.get(
        "/ready",
        summary="Readiness: 200 only with a verified model",
        response_model=Readiness,
        responses=NOT_READY,
    )
    async def ready(services: ServicesDep) -> Response:
        current = services.registry.current
        if current is None:
            return json_response(Readiness(ready=False), 503)
        return json_response(Readiness(ready=True, model_version=current.model.version))

    @app.get("/v2/health/live", summary="Open Inference Protocol liveness", response_model=Live)
    async def v2_live() -> Response:
        return json_response(Live(live=True))

    @app.get(
        "/v2/health/ready",
        summary="Open Inference Protocol readiness",
        response_model=ServerReadiness,
        responses=NOT_READY,
    )
    async def v2_ready(services: ServicesDep) -> Response:
        is_ready = services.registry.ready
        return json_response(ServerReadiness(ready=is_ready), 200 if is_ready else 503)

    @app.get(
        "/v2/models/{name}",
        summary="Open Inference Protocol model metadata",
        response_model=oip.ModelMetadata,
        responses=NOT_READY | UNKNOWN_MODEL,
    )
    async def v2_metadata(name: str, services: ServicesDep) -> Response:
        model = services.served_as(name).model
        return json_response(oip.model_metadata(name, model))

    @app.get(
        "/v2/models/{name}/ready",
        summary="Open Inference Protocol model readiness",
        response_model=ModelReadiness,
        responses=NOT_READY | UNKNOWN_MODEL,
    )
    async def v2_model_ready(name: str, services: ServicesDep) -> Response:
        services.served_as(name)
        return json_response(ModelReadiness(name=name, ready=True))


def _document(app: FastAPI, predictions: Sequence[PredictionRoute]) -> None:
    """Generate the OpenAPI document with the prediction routes in it, their answers'
    shapes among the document's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        references, definitions = TypeAdapter.json_schemas(
            [(r.path, SERIALIZATION, TypeAdapter(r.response_type)) for r in predictions],
            ref_template="#/components/schemas/{model}",
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        for route in predictions:
            answer = references[(route.path, SERIALIZATION)]
            document["paths"][route.path] = {"post": _operation(route, answer)}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _operation(route: PredictionRoute, answer: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": answer}}
    return {
        "summary": route.summary,
        "parameters": route.parameters,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": route.request_schema}},
        },
        "responses": {
            "200": {"description": "Predictions", "content": content},
            **{str(status): response for status, response in route.responses.items()},
        },
    }
