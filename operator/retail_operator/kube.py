"""A small async Kubernetes adapter: server-side apply, reads, status patches, and merge
patches computed from two documents.

Built on the official client's asyncio flavour (``kubernetes.aio``) for configuration and
authentication (kubeconfig, exec plugins, in-cluster tokens that rotate), but it speaks JSON
dicts rather than generated models: the operator applies documents it renders itself, and
parsing every response into pydantic models would cost more than the reconcile. Failures are
translated into the operator's error vocabulary.

Every write is fenced: with leader election, ``Fence.write_deadline`` says by when a write
must have landed for this replica to still be the only one acting (or raises ``NotLeader``),
and the write's client timeout ends there. A write cannot start, or hang on, past the moment
a standby could take over. The Lease's own calls are the only unfenced writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from kubernetes.aio import config as kube_config
from kubernetes.aio.client import ApiClient, Configuration
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config.config_exception import ConfigException

from retail_operator import metrics
from retail_operator.errors import (
    AccessDenied,
    NotLeader,
    OperatorError,
    PermanentError,
    SpecInvalid,
    TemporaryError,
)
from retail_operator.lanes import Gate

logger = logging.getLogger(__name__)

FIELD_MANAGER = "retail-operator"
# Holds a Deployment's replica count between the operator leaving it and its autoscaler
# taking it (``scale``).
HANDOFF_MANAGER = "retail-operator-handoff"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# A 404 answers these: nothing to read, or nothing left to delete.
_ABSENT_IS_AN_ANSWER = frozenset({"GET", "DELETE"})
REQUEST_TIMEOUT = 30.0  # seconds for any call, unless the fence leaves less

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps/{name}",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services/{name}",
    ("v1", "Pod"): "/api/v1/namespaces/{namespace}/pods/{name}",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    ("apps/v1", "ReplicaSet"): "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    (
        "policy/v1",
        "PodDisruptionBudget",
    ): "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}",
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ): "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}",
    (
        "mlops.retail.io/v1alpha1",
        "RetailModel",
    ): "/apis/mlops.retail.io/v1alpha1/namespaces/{namespace}/retailmodels/{name}",
    (
        "mlops.retail.io/v1alpha1",
        "RetailModelPolicy",
    ): "/apis/mlops.retail.io/v1alpha1/retailmodelpolicies/{name}",
    ("v1", "Namespace"): "/api/v1/namespaces/{name}",
    (
        "coordination.k8s.io/v1",
        "Lease",
    ): "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
}


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return _PATHS[(api_version, kind)].format(namespace=namespace, name=name)


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    """The objects of a kind in ``namespace``, or in every namespace (None)."""
    path = _PATHS[(api_version, kind)]
    if namespace is None:
        path = path.replace("/namespaces/{namespace}", "")
    return path.format(namespace=namespace, name="").rstrip("/")


async def load_configuration() -> Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException:
        await kube_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class AlreadyExists(TemporaryError):
    """A create found an object of that name (409): look at it before deciding anything."""

    reason = "AlreadyExists"


@dataclass(frozen=True)
class Page:
    """One page of a list: its objects, and the resourceVersion of the list's snapshot."""

    items: list[dict[str, Any]]
    resource_version: str


class Expired(TemporaryError):
    """A resourceVersion the API server no longer has (410 Gone): list again, then watch."""

    reason = "Expired"


class Fence(Protocol):
    def write_deadline(self) -> float:
        """The monotonic time by which a write must have landed; ``NotLeader`` if none."""
        ...


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch


def owns_replicas(deployment: Mapping[str, Any]) -> bool:
    """Whether the operator's server-side applies own the Deployment's ``spec.replicas``."""
    return any(
        entry.get("manager") == FIELD_MANAGER
        and entry.get("operation") == "Apply"
        and "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
        for entry in deployment.get("metadata", {}).get("managedFields") or []
    )


class KubeApi:
    """The handful of API calls the reconcile needs, with call counting for benchmarks."""

    def __init__(self, configuration: Configuration, fence: Fence | None = None) -> None:
        self._client = ApiClient(configuration)
        # At most one request per pooled connection at once. A request that waited for a free
        # connection inside aiohttp spent its timeout waiting: at 2,000 RetailModels most
        # reconciles' calls timed out in that queue and were retried, and few ever finished.
        # A change's reconcile gets the next free connection before periodic looks (``lanes``).
        self._connections = Gate(configuration.connection_pool_maxsize or 100)
        self.fence = fence
        self.calls = 0

    def _timeout(self, fenced: bool) -> float:
        if not fenced or self.fence is None:
            return REQUEST_TIMEOUT
        left = self.fence.write_deadline() - time.monotonic()
        if left <= 0:
            raise NotLeader("no longer leading: the write would land after the lease")
        return min(REQUEST_TIMEOUT, left)

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
        fenced: bool = True,
    ) -> dict[str, Any] | None:
        async with self._connections:  # the timeout starts once a connection is free
            return await self._send(method, path, query, body, content_type, fenced)

    async def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str | None,
        fenced: bool,
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        timeout = self._timeout(fenced and method != "GET")
        self.calls += 1
        metrics.KUBE_CALLS.labels(_verb(method, content_type)).inc()
        try:
            serialized = await self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = await self._client.call_api(*serialized, _request_timeout=timeout)
            data = await response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            if error.status == 404 and method in _ABSENT_IS_AN_ANSWER:
                return None
            raise _translate(error.status, error.body or str(error.reason), path) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _unreachable(error) from None
        if response.status == 404 and method in _ABSENT_IS_AN_ANSWER:
            return None
        if not 200 <= response.status < 300:
            raise _translate(response.status, data.decode(errors="replace"), path)
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, *, cached: bool = False
    ) -> Any:
        """One object, or None. ``cached``: from the API server's watch cache (cheap, may lag
        by moments), for questions a moment's lag cannot hurt."""
        query = [("resourceVersion", "0")] if cached else None
        return await self._request(
            "GET", object_path(api_version, kind, namespace, name), query=query
        )

    async def list_pages(
        self, api_version: str, kind: str, namespace: str | None, selector: str, *, limit: int
    ) -> AsyncIterator[Page]:
        """The objects of a kind matching ``selector`` (every namespace for None), a page of at
        most ``limit`` at a time, each with its apiVersion and kind as a watch event has them.
        Every page is of the same snapshot, whose resourceVersion a watch can start from. A
        page token that expired (410) is not resumed: the error says so, and the caller lists
        again from the start."""
        path = collection_path(api_version, kind, namespace)
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(limit))]
            if token:
                query.append(("continue", token))
            found = await self._request("GET", path, query=query)
            if found is None:
                logger.debug("%s: not served here (404): nothing listed", path)
                found = {}
            metadata = found.get("metadata", {})
            yield Page(
                [
                    {**item, "apiVersion": api_version, "kind": kind}
                    for item in found.get("items", [])
                ],
                str(metadata.get("resourceVersion", "")),
            )
            token = metadata.get("continue", "")
            if not token:
                return

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str,
        resource_version: str,
        *,
        seconds: int,
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of a kind matching ``selector`` after ``resource_version``
        (bookmarks included), until the API server ends the watch after ``seconds``. Each
        event's object carries its apiVersion and kind. ``Expired`` when the version is too old
        to watch from (list again); a stream silent for ``seconds`` and a half more (bookmarks
        come about every minute) is given up as ``TemporaryError``. Watches do not take one of
        the calls' connections: give them a client of their own."""
        path = collection_path(api_version, kind, namespace)
        query = [
            ("labelSelector", selector),
            ("watch", "1"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=REQUEST_TIMEOUT, sock_read=seconds * 1.5
        )
        self.calls += 1
        metrics.KUBE_CALLS.labels("watch").inc()
        try:
            serialized = await self._client.param_serialize(
                method="GET",
                resource_path=path,
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response = await self._client.call_api(*serialized, _request_timeout=timeout)
        except ApiException as error:
            raise _translate(error.status, error.body or str(error.reason), path) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _unreachable(error) from None
        stream: aiohttp.ClientResponse = response.response
        try:
            if stream.status == 410:
                raise Expired(f"{path}: resourceVersion {resource_version} is too old")
            if not 200 <= stream.status < 300:
                body = (await stream.read()).decode(errors="replace")
                raise _translate(stream.status, body, path)
            pending = b""
            async for chunk in stream.content.iter_any():  # a line is as long as its object
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(json.loads(line), api_version, kind, path)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _unreachable(error) from None
        finally:
            stream.release()

    async def list(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        """The objects of one kind in a namespace matching a label selector."""
        path = collection_path(api_version, kind, namespace)
        found = await self._request("GET", path, query=[("labelSelector", selector)])
        return list((found or {}).get("items", []))

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, uid: str = ""
    ) -> None:
        """Delete an object (its dependents in the background); one already gone is fine.
        With ``uid``, only that very object: one re-created under the name since is kept."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        await self._request("DELETE", object_path(api_version, kind, namespace, name), body=options)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's field manager, taking over conflicting fields
        (call it only for an object this RetailModel owns: ``children``)."""
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

    async def patch_status(
        self, namespace: str, name: str, uid: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch a RetailModel's status, only if it is still the object with ``uid``
        (not one deleted and re-created under the same name since)."""
        path = object_path("mlops.retail.io/v1alpha1", "RetailModel", namespace, name)
        await self._request(
            "PATCH",
            f"{path}/status",
            body={"metadata": {"uid": uid}, "status": status},
            content_type=MERGE_PATCH,
        )

    async def hand_off_replicas(self, namespace: str, name: str, replicas: int) -> None:
        """Apply a Deployment's replicas (unchanged) as the hand-off manager, so that it owns
        them too. An apply records co-ownership even when the value does not change, where an
        update of the same value would be a no-op (and record nothing)."""
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        await self._request(
            "PATCH",
            object_path("apps/v1", "Deployment", namespace, name),
            query=[("fieldManager", HANDOFF_MANAGER)],
            body=manifest,
            content_type=APPLY_PATCH,
        )

    async def patch_policy_status(self, name: str, status: dict[str, Any]) -> None:
        path = object_path("mlops.retail.io/v1alpha1", "RetailModelPolicy", "", name) + "/status"
        await self._request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    async def create(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        """POST a new object; ``AlreadyExists`` when one of that name exists."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], "")
        result = await self._request(
            "POST",
            path.rstrip("/"),
            query=[("fieldManager", FIELD_MANAGER)],
            body=manifest,
            fenced=fenced,
        )
        assert result is not None
        return result

    async def replace(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        """PUT an object with its ``resourceVersion``: a 409 when someone changed it since."""
        meta = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        result = await self._request("PUT", path, body=manifest, fenced=fenced)
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


_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}


def _verb(method: str, content_type: str | None) -> str:
    """The API server's word for a request (an apply is a PATCH of the apply content type)."""
    return "apply" if content_type == APPLY_PATCH else _VERBS.get(method, method.lower())


def _unreachable(error: Exception) -> TemporaryError:
    return TemporaryError(
        f"Kubernetes API unreachable: {type(error).__name__}",
        reason="ApiUnavailable",
        retry_after=3,
    )


def _watch_event(event: dict[str, Any], api_version: str, kind: str, path: str) -> dict[str, Any]:
    """One line of a watch: an ERROR (a Status) raised as the operator's error, 410 as
    ``Expired``; else the event, its object given the apiVersion and kind it lacks."""
    found = event.get("object") or {}
    if event.get("type") == "ERROR":
        if found.get("code") == 410:
            raise Expired(f"{path}: {found.get('message', 'too old resource version')}")
        raise _translate(found.get("code"), json.dumps(found), path)
    event["object"] = {**found, "apiVersion": api_version, "kind": kind}
    return event


def _translate(status: int | None, body: str, path: str) -> Exception:
    message, reason = body, ""
    try:
        document = json.loads(body)
        message, reason = document.get("message", body), document.get("reason", "")
    except (ValueError, AttributeError):
        pass
    if status == 403:
        return AccessDenied(f"Kubernetes denied {path}: {message}")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(f"{path}: {message}", retry_after=2)
    if status == 422:
        # The API server names the field: "Deployment.apps "x" is invalid: spec...: ...".
        return SpecInvalid(f"the API server refused it: {message}")
    if status in (409, 429) or status is None or status >= 500:
        return TemporaryError(
            f"Kubernetes API {status}: {message}", reason="ApiUnavailable", retry_after=2
        )
    return PermanentError(f"Kubernetes API {status} for {path}: {message}", reason="ApiRejected")
