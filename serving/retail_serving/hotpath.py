"""The prediction routes, ``/predict``, ``/predict/batch`` and ``/v2/models/{name}/infer``: the
routes a benchmark (and production traffic) hammers.

Each is written once, as a handler from (services, model name, body bytes) to JSON-able
content that raises domain errors, and served by a ``PredictionRoute``: a plain Starlette
route whose endpoint is bare ASGI. It reads the body (``http.read_body``), runs the handler and
sends orjson bytes; errors become answers through ``http.error_answer``; it counts and times
the request in ``/metrics`` itself. No ``Request`` object, no FastAPI parameter machinery or
response validation, no middleware: the app (``app.create_apps``) puts these routes on a plain
Starlette ``Router`` in front of the FastAPI app, because FastAPI's own stack added about half
as much again to the CPU time of a single-row request, and the metrics middleware another
2.7 µs of a 12.4 µs request in process (docs/performance.md has the measurements).

Each route also carries its OpenAPI description (request schema, response type, errors),
which ``routes`` adds to the app's document.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from retail_serving import http, oip
from retail_serving.admission import RETRY_AFTER, Overloaded
from retail_serving.payloads import (
    ROW,
    BatchPrediction,
    Prediction,
    parse_one,
    prediction,
    predictions,
)
from retail_serving.services import Services

log = logging.getLogger("retail_serving")

Handler = Callable[[Services, str, bytes], Awaitable[Any]]
INTERNAL_ERROR = b'{"detail":"internal error"}'


async def predict(services: Services, name: str, body: bytes) -> Prediction:
    row = parse_one(body)
    model = services.served().model
    probabilities = await services.engine.predict_row(model, model.encoder.encode_row(row))
    return prediction([round(p, 6) for p in probabilities], model.classes, model.version)


async def predict_batch(services: Services, name: str, body: bytes) -> BatchPrediction:
    rows = services.batch_parser.parse(body)
    model = services.served().model
    probabilities = await services.engine.predict_matrix(model, model.encoder.encode_rows(rows))
    answers = predictions(probabilities, model.classes, model.version)
    return {"predictions": answers, "count": len(answers)}


async def v2_infer(services: Services, name: str, body: bytes) -> oip.InferResponse:
    model = services.served_as(name).model
    decoded = oip.decode_infer(body, model.encoder, services.settings.max_batch_rows)
    if isinstance(decoded.features, list):  # one row: through the micro-batcher
        probabilities = [await services.engine.predict_row(model, decoded.features)]
    else:
        matrix = await services.engine.predict_matrix(model, decoded.features)
        probabilities = matrix.tolist()
    return oip.infer_response(name, model, decoded, probabilities)


class _Answer:
    """The ASGI endpoint of one prediction route (a class, so Starlette passes it the raw
    scope instead of wrapping it in a ``Request``). It counts and times its requests itself,
    from the moment the router hands it the request, under the route's path template; a
    request cut short (its client gone mid-prediction) counts as a 500, as the middleware
    around the other routes counts it. A request shed because too many body bytes are held
    (``admission``) is counted as shed, not under the route: its 503 says nothing of the
    model, and the canary analysis reads a prediction route's 5xx as failed predictions."""

    def __init__(self, services: Services, handler: Handler, route: str) -> None:
        self.services = services
        self.handler = handler
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        held, shed = 0, False
        headers = [(b"content-type", b"application/json")]
        try:
            try:
                body = await http.read_body(
                    scope, receive, self.services.settings.max_body_bytes, self.services.bodies
                )
                held = len(body)
                name = scope["path_params"].get("name", "")
                status, content = 200, orjson.dumps(await self.handler(self.services, name, body))
            except Exception as error:
                answer = http.error_answer(error, scope["path"])
                if answer is None:
                    log.exception("unexpected error answering %s", scope["path"])
                    status, content = 500, INTERNAL_ERROR
                else:
                    status, content = answer[0], orjson.dumps(answer[1])
                if isinstance(error, Overloaded):
                    headers.append(RETRY_AFTER)
                    shed = True
            headers.append((b"content-length", str(len(content)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        finally:
            self.services.bodies.give(held)
            if not shed:
                elapsed = time.perf_counter() - started
                self.services.metrics.answered(self.route, "POST", status, elapsed)


class PredictionRoute(Route):
    """A POST route answered by ``handler``, with what OpenAPI should say about it.

    Like FastAPI's own routes it records itself in the scope, so the metrics middleware labels
    the requests it refuses (another method: FastAPI's 405) by its path template."""

    def __init__(
        self,
        path: str,
        handler: Handler,
        services: Services,
        *,
        summary: str,
        request_schema: dict[str, Any],
        response_type: Any,
        responses: dict[int | str, dict[str, Any]] | None = None,
        parameters: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(path, _Answer(services, handler, path), methods=["POST"])
        self.summary = summary
        self.request_schema = request_schema
        self.response_type = response_type
        self.responses = {**http.REFUSED_INPUT, **http.OVERLOADED, **(responses or {})}
        self.parameters = parameters or []

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def prediction_routes(services: Services) -> list[PredictionRoute]:
    """The three prediction routes, answering with ``services``' model."""
    row = ROW.json_schema()
    limit = services.settings.max_batch_rows
    batch_schema = {
        "type": "array",
        "items": row,
        "minItems": 1,
        # Not maxItems: over the cap is a 413 (too large), not a schema violation.
        "description": f"At most {limit} rows; more is answered with 413.",
    }
    model_name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [services.settings.model_name]},
    }
    # The router tries routes in order, about 2 µs each: the v2 route first, as the slower of
    # the two single-row routes (it decodes a whole v2 request).
    return [
        PredictionRoute(
            "/v2/models/{name}/infer",
            v2_infer,
            services,
            summary="Open Inference Protocol inference",
            request_schema=oip.REQUEST_SCHEMA,
            response_type=oip.InferResponse,
            responses=http.UNKNOWN_MODEL,
            parameters=[model_name],
        ),
        PredictionRoute(
            "/predict",
            predict,
            services,
            summary="Predict one basket's price sensitivity",
            request_schema=row,
            response_type=Prediction,
        ),
        PredictionRoute(
            "/predict/batch",
            predict_batch,
            services,
            summary="Predict many baskets in one vectorised model call",
            request_schema=batch_schema,
            response_type=BatchPrediction,
        ),
    ]
