"""The predictor's HTTP routes (docs/serving.md lists them) on the FastAPI app.

The three prediction routes live in ``hotpath`` (plain Starlette routes, also reached directly
by ``hotpath.FastPath``); this module adds them to the app, describes them in the OpenAPI
document by hand (``_document_prediction_routes``: FastAPI only documents its own routes), and
defines the other routes. Domain errors become HTTP answers through ``hotpath.error_answer``,
here and in the fast path alike, and nowhere else.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response

from retail_serving import oip
from retail_serving.hotpath import (
    HOT_ROUTES,
    BodyTooLarge,
    ClientGone,
    NoModel,
    UnknownModel,
    error_answer,
    served,
    v2_model,
)
from retail_serving.metrics import CONTENT_TYPE
from retail_serving.page import PAGE
from retail_serving.payloads import ROW, InvalidInput
from retail_serving.services import Services

NOT_READY: dict[int | str, dict[str, Any]] = {503: {"description": "No verified model loaded yet"}}
UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {404: {"description": "Not the served model"}}


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


def services_of(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def services(request: Request) -> Services:
    return services_of(request.app)


def install(app: FastAPI) -> None:
    """Add every route and error handler to ``app``; the prediction routes come first."""
    app.router.routes.extend(HOT_ROUTES)
    _document_prediction_routes(app)

    async def domain_error(request: Request, error: Exception) -> Response:
        mapped = error_answer(error, request.url.path, services(request))
        assert mapped is not None  # registered for domain errors only
        return json_response(mapped[1], mapped[0])

    for error_type in (InvalidInput, NoModel, UnknownModel, BodyTooLarge, ClientGone):
        app.add_exception_handler(error_type, domain_error)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/health", summary="Liveness: the process is up")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready", summary="Readiness: 200 only with a verified model", responses=NOT_READY)
    async def ready(request: Request) -> Response:
        current = services(request).registry.current
        if current is None:
            return json_response({"ready": False}, 503)
        return json_response({"ready": True, "model_version": current.model.version})

    @app.get(
        "/model/info", summary="The model being served and where it came from", responses=NOT_READY
    )
    async def model_info(request: Request) -> Response:
        context = services(request)
        current = served(context)
        model = current.model
        return json_response(
            {
                "name": context.settings.model_name,
                "version": model.version,
                "sha256": model.sha256,
                "source_uri": current.source_uri,
                "etag": current.origin.etag,
                "version_id": current.origin.version_id,
                "loaded_at": current.loaded_at.isoformat(),
                "features": [
                    {"name": f.name, "kind": f.kind.value, "domain": f.domain}
                    for f in model.schema.features
                ],
                "classes": list(model.classes),
                "last_reload_error": context.registry.last_error,
            }
        )

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(services(request).metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v2/health/live", summary="Open Inference Protocol liveness")
    async def v2_live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", summary="Open Inference Protocol readiness", responses=NOT_READY)
    async def v2_ready(request: Request) -> Response:
        is_ready = services(request).registry.ready
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    @app.get(
        "/v2/models/{name}",
        summary="Open Inference Protocol model metadata",
        responses=NOT_READY | UNKNOWN_MODEL,
    )
    async def v2_metadata(request: Request, name: str) -> Response:
        return json_response(oip.model_metadata(name, v2_model(services(request), name).model))

    @app.get(
        "/v2/models/{name}/ready",
        summary="Open Inference Protocol model readiness",
        responses=NOT_READY | UNKNOWN_MODEL,
    )
    async def v2_model_ready(request: Request, name: str) -> Response:
        v2_model(services(request), name)
        return json_response({"name": name, "ready": True})


def _document_prediction_routes(app: FastAPI) -> None:
    """Add the plain-Starlette prediction routes to the generated OpenAPI document."""

    def operation(
        summary: str, schema: dict[str, Any], more: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": {"description": "Predictions", "content": {"application/json": {}}},
                "400": {"description": "The client went away mid-body"},
                "413": {"description": "Too many rows or too large a body"},
                "422": {"description": "Invalid input; `loc` names the field"},
                "503": {"description": "No verified model loaded yet"},
                **(more or {}),
            },
        }

    row = ROW.json_schema()
    limit = services_of(app).settings.max_batch_rows
    model_name = services_of(app).settings.model_name
    paths = {
        "/predict": {"post": operation("Predict one basket's price sensitivity", row)},
        "/predict/batch": {
            "post": operation(
                "Predict many baskets in one vectorised model call",
                {
                    "type": "array",
                    "items": row,
                    "minItems": 1,
                    # Not maxItems: over the cap is a 413 (too large), not a schema violation.
                    "description": f"At most {limit} rows; more is answered with 413.",
                },
            )
        },
        "/v2/models/{name}/infer": {
            "post": {
                **operation(
                    "Open Inference Protocol inference",
                    oip.REQUEST_SCHEMA,
                    {"404": {"description": "Not the served model"}},
                ),
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": [model_name]},
                    }
                ],
            }
        },
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            document["paths"].update(paths)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
