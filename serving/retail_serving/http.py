"""The predictor's HTTP edge: what each domain error means over HTTP, and reading a body.

``error_answer`` is the one map from an error to a status and a JSON body; the prediction
routes (``hotpath``) call it themselves and the FastAPI app answers through it (``install``),
so a refusal looks the same whichever route gave it. The OpenAPI ``responses`` below describe
the same statuses. ``read_body`` enforces ``MAX_BODY_BYTES`` while the body arrives, so an
oversized request is refused before it is held in memory, and takes the body's bytes from the
budget of bytes held at once (``admission``).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from retail_serving.admission import BodyBudget, Overloaded
from retail_serving.errors import NoModel, UnknownModel
from retail_serving.payloads import InvalidInput

V2_PREFIX = "/v2/"
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"description": "No verified model loaded yet"}}
UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {404: {"description": "Not the served model"}}
REFUSED_INPUT: dict[int | str, dict[str, Any]] = {
    400: {"description": "The client went away mid-body"},
    408: {"description": "The body did not arrive in time (REQUEST_BODY_TIMEOUT_SECONDS)"},
    413: {"description": "Too many rows or too large a body"},
    422: {"description": "Invalid input; `loc` names the field"},
}
OVERLOADED: dict[int | str, dict[str, Any]] = {
    503: {"description": "No verified model loaded yet, or too busy (then with Retry-After)"}
}


class BodyTooLarge(Exception):
    """The request body is over ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


DOMAIN_ERRORS = (InvalidInput, NoModel, UnknownModel, BodyTooLarge, ClientGone, Overloaded)


def error_answer(error: Exception, path: str) -> tuple[int, Any] | None:
    """The HTTP status and JSON body for a domain error, or None for anything else.

    v2 routes answer as the Open Inference Protocol does (an ``error`` message); the others
    as FastAPI does (a ``detail``)."""
    if isinstance(error, InvalidInput):
        status = 413 if error.too_large else 422
        if path.startswith(V2_PREFIX):
            return status, {"error": str(error), "detail": error.errors}
        return status, {"detail": error.errors}
    if isinstance(error, NoModel):
        return 503, {"detail": "no verified model is loaded yet"}
    if isinstance(error, UnknownModel):
        return 404, {"error": f"model {error} is not served here"}
    if isinstance(error, BodyTooLarge):
        return 413, {"detail": str(error)}
    if isinstance(error, ClientGone):
        return 400, {"detail": "the client went away before sending the whole body"}
    if isinstance(error, Overloaded):  # answered with Retry-After (admission.RETRY_AFTER)
        return 503, {"detail": str(error)}
    return None


def json_response(content: Any, status: int = 200) -> Response:
    """``content`` as orjson bytes: no pydantic serialisation on the way out."""
    return Response(orjson.dumps(content), status, media_type="application/json")


def install(app: FastAPI) -> None:
    """Answer every domain error an ``app`` route raises through ``error_answer``."""

    async def domain_error(request: Request, error: Exception) -> Response:
        answer = error_answer(error, request.url.path)
        assert answer is not None  # registered for the domain errors only
        return json_response(answer[1], answer[0])

    for error_type in DOMAIN_ERRORS:
        app.add_exception_handler(error_type, domain_error)


async def read_body(scope: Scope, receive: Receive, limit: int, budget: BodyBudget) -> bytes:
    """The whole request body, refused (``BodyTooLarge``) as soon as it is over ``limit``.
    Its bytes are taken from ``budget`` as they arrive (``Overloaded`` when it is spent); the
    caller gives back ``len(body)`` once the request is answered, and a refusal gives back
    what it took."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                raise BodyTooLarge(limit)
            budget.take(len(chunk))
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    except BaseException:
        budget.give(size)
        raise
