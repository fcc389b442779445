"""The predictor's metrics port: ``GET /metrics`` and ``GET /model/info``, which the Service does
not expose.

Both tell more than a client needs (every request's route and status, the model's digest, where
it came from, why the last reload failed), and a scrape should not queue behind predictions or
count against their bound. So they answer on a port of their own (``METRICS_PORT``, 9090 by
default), reached by pod IP: the operator's canary analysis and Prometheus scrape it there, and
a person asks a pod with ``kubectl exec``. The API port answers both paths with 404. The app
shares the API app's ``Services``; its requests are not counted in the request metrics, which
describe the API's traffic.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from typing_extensions import TypedDict

from retail_serving import http
from retail_serving.http import NOT_READY, json_response
from retail_serving.metrics import CONTENT_TYPE
from retail_serving.services import Services, ServicesDep


class FeatureInfo(TypedDict):
    name: str
    kind: str
    domain: list[str] | None


class ModelInfo(TypedDict):
    name: str
    version: str
    sha256: str
    source_uri: str
    etag: str | None
    version_id: str | None
    loaded_at: str
    features: list[FeatureInfo]
    classes: list[str]
    last_reload_error: str | None


def create_admin(services: Services) -> FastAPI:
    """The metrics port's app, answering from ``services``."""
    app = FastAPI(
        title="RetailModel predictor: metrics port",
        summary="Prometheus metrics and the model being served; not exposed by the Service.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    http.install(app)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(services: ServicesDep) -> Response:
        return Response(services.metrics.render(), media_type=CONTENT_TYPE)

    @app.get(
        "/model/info",
        summary="The model being served and where it came from",
        response_model=ModelInfo,
        responses=NOT_READY,
    )
    async def model_info(services: ServicesDep) -> Response:
        current = services.served()
        model = current.model
        info: ModelInfo = {
            "name": services.settings.model_name,
            "version": model.version,
            "sha256": model.sha256,
            "source_uri": current.source_uri,
            "etag": current.origin.etag,
            "version_id": current.origin.version_id,
            "loaded_at": current.loaded_at.isoformat(),
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind.value,
                    "domain": None if f.domain is None else list(f.domain),
                }
                for f in model.schema.features
            ],
            "classes": list(model.classes),
            "last_reload_error": services.registry.last_error,
        }
        return json_response(info)

    return app
