"""The predictor's HTTP routes (DESIGN.md predictor table) and the mapping of errors to HTTP.

The three prediction routes are plain Starlette routes: they read the raw body, validate it
with pydantic-core directly and answer with orjson-encoded bytes. FastAPI's parameter solving,
body parsing and response encoding cost about a third of a single-row request (measured), so
the hot path skips them; their schemas are added to the OpenAPI document by hand
(``_document_prediction_routes``). Domain errors (``InvalidInput``, ``NoModel``) become HTTP
errors here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from retail_serving import oip
from retail_serving.metrics import CONTENT_TYPE
from retail_serving.page import PAGE
from retail_serving.payloads import ROW, InvalidInput, parse_one, prediction, predictions
from retail_serving.registry import ServedModel
from retail_serving.services import Services


class NoModel(Exception):
    """No verified model is loaded yet."""


class UnknownModel(Exception):
    """A v2 route named a model this server does not serve."""


class BodyTooLarge(Exception):
    pass


class PlainRoute(Route):
    """A Starlette route that, like FastAPI's own, records itself in the scope, so the metrics
    middleware can label requests by its path template."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


def services_of(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def services(request: Request) -> Services:
    return services_of(request.app)


def served(request: Request) -> ServedModel:
    current = services(request).registry.current
    if current is None:
        raise NoModel
    return current


async def read_body(request: Request) -> bytes:
    limit = services(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _v2_model(request: Request, name: str) -> ServedModel:
    if name != services(request).settings.model_name:
        raise UnknownModel(name)
    return served(request)


def install(app: FastAPI) -> None:
    """Add every route and error handler to ``app``; the prediction routes come first."""
    app.router.routes.extend(
        [
            PlainRoute("/predict", predict, methods=["POST"]),
            PlainRoute("/predict/batch", predict_batch, methods=["POST"]),
            PlainRoute("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        ]
    )
    _document_prediction_routes(app)

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, error: InvalidInput) -> Response:
        status = 413 if error.too_large else 422
        if request.url.path.startswith("/v2/"):
            return json_response({"error": str(error), "detail": error.errors}, status)
        return json_response({"detail": error.errors}, status)

    @app.exception_handler(NoModel)
    async def no_model(request: Request, error: NoModel) -> Response:
        return json_response({"detail": "no verified model is loaded yet"}, 503)

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, error: UnknownModel) -> Response:
        return json_response({"error": f"model {error} is not served here"}, 404)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, error: BodyTooLarge) -> Response:
        limit = services(request).settings.max_body_bytes
        return json_response({"detail": f"request body exceeds {limit} bytes"}, 413)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/health", summary="Liveness: the process is up")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready", summary="Readiness: 200 only while a verified model is loaded")
    async def ready(request: Request) -> Response:
        current = services(request).registry.current
        if current is None:
            return json_response({"ready": False}, 503)
        return json_response({"ready": True, "model_version": current.model.version})

    @app.get("/model/info", summary="The model being served and where it came from")
    async def model_info(request: Request) -> Response:
        context = services(request)
        current = served(request)
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

    @app.get("/v2/health/ready", summary="Open Inference Protocol readiness")
    async def v2_ready(request: Request) -> Response:
        is_ready = services(request).registry.ready
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2/models/{name}", summary="Open Inference Protocol model metadata")
    async def v2_metadata(request: Request, name: str) -> Response:
        return json_response(oip.model_metadata(name, _v2_model(request, name).model))

    @app.get("/v2/models/{name}/ready", summary="Open Inference Protocol model readiness")
    async def v2_model_ready(request: Request, name: str) -> Response:
        _v2_model(request, name)
        return json_response({"name": name, "ready": True})


async def predict(request: Request) -> Response:
    row = parse_one(await read_body(request))
    model = served(request).model
    probabilities = await services(request).engine.predict_row(model, model.encoder.encode_row(row))
    return json_response(
        prediction([round(p, 6) for p in probabilities], model.classes, model.version)
    )


async def predict_batch(request: Request) -> Response:
    context = services(request)
    rows = context.batch_parser.parse(await read_body(request))
    model = served(request).model
    probabilities = await context.engine.predict_matrix(model, model.encoder.encode_rows(rows))
    answers = predictions(probabilities, model.classes, model.version)
    return json_response({"predictions": answers, "count": len(answers)})


async def v2_infer(request: Request) -> Response:
    context = services(request)
    name = request.path_params["name"]
    model = _v2_model(request, name).model
    body = await read_body(request)
    decoded = oip.decode_infer(body, model.encoder, context.settings.max_batch_rows)
    if len(decoded.matrix) == 1:
        row = await context.engine.predict_row(model, decoded.matrix[0].tolist())
        probabilities = np.asarray([row], dtype=np.float32)
    else:
        probabilities = await context.engine.predict_matrix(model, decoded.matrix)
    return json_response(oip.infer_response(name, model, decoded, probabilities))


def _document_prediction_routes(app: FastAPI) -> None:
    """Add the plain-Starlette prediction routes to the generated OpenAPI document."""

    def operation(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": {"description": "Predictions"},
                "413": {"description": "Too many rows or too large a body"},
                "422": {"description": "Invalid input; `loc` names the field"},
                "503": {"description": "No verified model loaded yet"},
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
                {"type": "array", "items": row, "minItems": 1, "maxItems": limit},
            )
        },
        "/v2/models/{name}/infer": {
            "post": {
                **operation("Open Inference Protocol inference", oip.REQUEST_SCHEMA),
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
