"""The prediction routes, and a direct way to them that skips the general-purpose layers.

``/predict``, ``/predict/batch`` and ``/v2/models/{name}/infer`` are the routes a benchmark (and
production traffic) hammers. Each is written once, as a handler from (services, path name, body
bytes) to JSON-able content, raising the domain errors below. Two things serve them:

* ``HotRoute``: a plain Starlette route registered on the FastAPI app, so the routes appear in
  the app's routing (405s, OpenAPI) like any other;
* ``FastPath``: an ASGI wrapper in front of the app that recognises exactly these POSTs and
  calls the same handler directly. FastAPI's router and its exception and error middlewares
  took more CPU than a whole single-row prediction (measured: about 120 µs against 75 µs per
  request), so the hot path does not pass through them. Everything else goes to the app.

Both answer errors through ``error_answer``, so a request gets the same response either way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from retail_serving import oip
from retail_serving.payloads import InvalidInput, parse_one, prediction, predictions
from retail_serving.registry import ServedModel
from retail_serving.services import Services

log = logging.getLogger("retail_serving")

JSON_HEADERS = [(b"content-type", b"application/json")]


class NoModel(Exception):
    """No verified model is loaded yet."""


class UnknownModel(Exception):
    """A v2 route named a model this server does not serve."""


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


def served(context: Services) -> ServedModel:
    current = context.registry.current
    if current is None:
        raise NoModel
    return current


def v2_model(context: Services, name: str) -> ServedModel:
    if name != context.settings.model_name:
        raise UnknownModel(name)
    return served(context)


def error_answer(error: Exception, path: str, context: Services) -> tuple[int, Any] | None:
    """The HTTP status and body for a domain error, or None for anything else."""
    if isinstance(error, InvalidInput):
        status = 413 if error.too_large else 422
        if path.startswith("/v2/"):
            return status, {"error": str(error), "detail": error.errors}
        return status, {"detail": error.errors}
    if isinstance(error, NoModel):
        return 503, {"detail": "no verified model is loaded yet"}
    if isinstance(error, UnknownModel):
        return 404, {"error": f"model {error} is not served here"}
    if isinstance(error, BodyTooLarge):
        return 413, {"detail": f"request body exceeds {context.settings.max_body_bytes} bytes"}
    if isinstance(error, ClientGone):
        return 400, {"detail": "the client went away before sending the whole body"}
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def predict(context: Services, name: str, body: bytes) -> Any:
    row = parse_one(body)
    model = served(context).model
    probabilities = await context.engine.predict_row(model, model.encoder.encode_row(row))
    return prediction([round(p, 6) for p in probabilities], model.classes, model.version)


async def predict_batch(context: Services, name: str, body: bytes) -> Any:
    rows = context.batch_parser.parse(body)
    model = served(context).model
    probabilities = await context.engine.predict_matrix(model, model.encoder.encode_rows(rows))
    answers = predictions(probabilities, model.classes, model.version)
    return {"predictions": answers, "count": len(answers)}


async def v2_infer(context: Services, name: str, body: bytes) -> Any:
    model = v2_model(context, name).model
    decoded = oip.decode_infer(body, model.encoder, context.settings.max_batch_rows)
    if len(decoded.matrix) == 1:
        row = await context.engine.predict_row(model, decoded.matrix[0].tolist())
        probabilities = np.asarray([row], dtype=np.float32)
    else:
        probabilities = await context.engine.predict_matrix(model, decoded.matrix)
    return oip.infer_response(name, model, decoded, probabilities)


Handler = Callable[[Services, str, bytes], Awaitable[Any]]


async def answer(
    context: Services, handler: Handler, scope: Scope, receive: Receive
) -> tuple[int, bytes]:
    """Run ``handler`` for one request: (status, JSON body), domain errors included."""
    try:
        body = await read_body(scope, receive, context.settings.max_body_bytes)
        name = scope.get("path_params", {}).get("name", "")
        return 200, orjson.dumps(await handler(context, name, body))
    except Exception as error:
        mapped = error_answer(error, scope["path"], context)
        if mapped is None:
            raise
        return mapped[0], orjson.dumps(mapped[1])


class HotRoute(Route):
    """A prediction route on the app; like FastAPI's own routes it records itself in the
    scope, so the metrics middleware can label requests by its path template."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.handler = handler

        async def endpoint(request: Request) -> Response:
            context: Services = request.app.state.services
            status, content = await answer(context, handler, request.scope, request.receive)
            return Response(content, status, media_type="application/json")

        super().__init__(path, endpoint, methods=["POST"])

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


V2_PREFIX, V2_INFER_SUFFIX = "/v2/models/", "/infer"
_PREDICT = HotRoute("/predict", predict)
_PREDICT_BATCH = HotRoute("/predict/batch", predict_batch)
_INFER = HotRoute(V2_PREFIX + "{name}" + V2_INFER_SUFFIX, v2_infer)
HOT_ROUTES = (_PREDICT, _PREDICT_BATCH, _INFER)
_EXACT = {route.path: route for route in (_PREDICT, _PREDICT_BATCH)}


class FastPath:
    """ASGI wrapper: exact prediction POSTs go straight to their handler, the rest to ``app``."""

    def __init__(self, app: ASGIApp, context: Services) -> None:
        self.app = app
        self.context = context

    def _route(self, path: str) -> tuple[HotRoute, str] | None:
        route = _EXACT.get(path)
        if route is not None:
            return route, ""
        if path.startswith(V2_PREFIX) and path.endswith(V2_INFER_SUFFIX):
            name = path[len(V2_PREFIX) : -len(V2_INFER_SUFFIX)]
            if name and "/" not in name:
                return _INFER, name
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._route(scope["path"]) if scope["type"] == "http" else None
        if found is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        route, name = found
        scope["route"] = route
        scope["path_params"] = {"name": name}
        try:
            status, content = await answer(self.context, route.handler, scope, receive)
        except Exception:
            log.exception("unexpected error answering %s", scope["path"])
            status, content = 500, b'{"detail":"internal error"}'
        headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
