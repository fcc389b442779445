"""A small async Kubernetes adapter: server-side apply, reads, status patches.

Built on the official client's asyncio flavour (``kubernetes.aio``) for configuration and
authentication (kubeconfig, exec plugins, in-cluster tokens that rotate), but it speaks JSON
dicts rather than generated models: the operator applies documents it renders itself, and
parsing every response into pydantic models would cost more than the reconcile. Failures are
translated into the operator's error vocabulary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import ApiClient, Configuration
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config.config_exception import ConfigException

from retail_operator.errors import AccessDenied, OperatorError, PermanentError, TemporaryError

logger = logging.getLogger(__name__)

FIELD_MANAGER = "retail-operator"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# A 404 answers these: nothing to read, or nothing left to delete.
_ABSENT_IS_AN_ANSWER = frozenset({"GET", "DELETE"})

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps/{name}",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services/{name}",
    ("v1", "Pod"): "/api/v1/namespaces/{namespace}/pods/{name}",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    (
        "mlops.retail.io/v1alpha1",
        "RetailModel",
    ): "/apis/mlops.retail.io/v1alpha1/namespaces/{namespace}/retailmodels/{name}",
    (
        "coordination.k8s.io/v1",
        "Lease",
    ): "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
}


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return _PATHS[(api_version, kind)].format(namespace=namespace, name=name)


async def load_configuration() -> Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException:
        await kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class KubeApi:
    """The handful of API calls the reconcile needs, with call counting for benchmarks."""

    def __init__(self, configuration: Configuration) -> None:
        self._client = ApiClient(configuration)
        self.calls = 0

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        self.calls += 1
        try:
            serialized = await self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = await self._client.call_api(*serialized, _request_timeout=30)
            data = await response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            if error.status == 404 and method in _ABSENT_IS_AN_ANSWER:
                return None
            raise _translate(error.status, error.body or str(error.reason), path) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise TemporaryError(
                f"Kubernetes API unreachable: {type(error).__name__}",
                reason="ApiUnavailable",
                retry_after=3,
            ) from None
        if response.status == 404 and method in _ABSENT_IS_AN_ANSWER:
            return None
        if not 200 <= response.status < 300:
            raise _translate(response.status, data.decode(errors="replace"), path)
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return await self._request("GET", object_path(api_version, kind, namespace, name))

    async def list(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        """The objects of one kind in a namespace matching a label selector."""
        path = object_path(api_version, kind, namespace, "").rstrip("/")
        found = await self._request("GET", path, query=[("labelSelector", selector)])
        return list((found or {}).get("items", []))

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete an object (its dependents in the background); one already gone is fine."""
        await self._request(
            "DELETE",
            object_path(api_version, kind, namespace, name),
            body={"propagationPolicy": "Background"},
        )

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager, taking over conflicting fields."""
        meta = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        result = await self._request(
            "PATCH",
            path,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=manifest,
            content_type=APPLY_PATCH,
        )
        assert result is not None
        return result

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        """A JSON merge patch of one object (the operator's annotations on a running pod)."""
        path = object_path(api_version, kind, namespace, name)
        await self._request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = object_path("mlops.retail.io/v1alpha1", "RetailModel", namespace, name)
        await self._request(
            "PATCH", f"{path}/status", body={"status": status}, content_type=MERGE_PATCH
        )

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """POST a new object (the leader-election Lease); a 409 says it exists already."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], "")
        result = await self._request("POST", path.rstrip("/"), body=manifest)
        assert result is not None
        return result

    async def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """PUT an object with its ``resourceVersion``: a 409 when someone changed it since."""
        meta = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        result = await self._request("PUT", path, body=manifest)
        assert result is not None
        return result

    async def post_event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Create a core/v1 Event about ``involved`` (a RetailModel body)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "mlops.retail.io/v1alpha1"),
                "kind": involved.get("kind", "RetailModel"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": f"mlops.retail.io/{FIELD_MANAGER}",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)


class EventPoster:
    """Posts Events in the background: a slow or failing post (say, into a namespace being
    deleted) never delays a reconcile or other Events, and is logged, not retried."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        task = asyncio.create_task(self._post(dict(involved), type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._kube.post_event(involved, type_, reason, message)
        except OperatorError as error:
            logger.info("event %s not posted: %s", reason, error)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _translate(status: int | None, body: str, path: str) -> Exception:
    message = body
    try:
        message = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    if status == 403:
        return AccessDenied(f"Kubernetes denied {path}: {message}")
    if status in (409, 429) or status is None or status >= 500:
        return TemporaryError(
            f"Kubernetes API {status}: {message}", reason="ApiUnavailable", retry_after=2
        )
    return PermanentError(f"Kubernetes API {status} for {path}: {message}", reason="ApiRejected")
