"""A platform's operations on a RetailModel's pods, and what the pods and the status did
meanwhile: for the end-to-end tests and the demo.

``Evictions`` evicts pods through the Eviction API (``pods/eviction``, policy/v1), as a node
drain does, and returns the API server's HTTP status: 201 evicted, 429 refused by a disruption
budget. ``evict_in_turn`` evicts every pod of a RetailModel one after the other, retrying
refused ones, and tries the next pod at once after each eviction (the budget must refuse it).
``ReadyPods`` watches the RetailModel's pods and records how many are ready (and not going
away) at each change; ``StatusLog`` watches the RetailModel and records every change of its
conditions and replica counts, with the object as it was. Both are watches of the API server
(the ``kubernetes`` client), so nothing between two polls goes unseen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from retail_tools.polling import wait_until

GROUP, VERSION, PLURAL = "mlops.retail.io", "v1alpha1", "retailmodels"
EVICTED, REFUSED = 201, 429


def api_client(kubeconfig: Path) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def selector(name: str) -> str:
    return f"mlops.retail.io/retailmodel={name}"


def is_ready(pod: dict[str, Any]) -> bool:
    """Ready and not terminating: what a disruption budget counts as healthy."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Evictions:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def evict(self, namespace: str, pod: str) -> int:
        """Ask the API server to evict ``pod``; its HTTP status."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
        try:
            _, status, _ = self.core.create_namespaced_pod_eviction_with_http_info(
                pod, namespace, body
            )
        except ApiException as error:
            return int(error.status)
        return int(status)


@dataclass(frozen=True)
class Attempt:
    pod: str
    status: int
    at: float  # seconds since the round began
    right_after_an_eviction: bool


@dataclass
class EvictionRound:
    pods: list[str]  # the pods there were, each evicted in turn
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def evicted(self) -> list[str]:
        return [a.pod for a in self.attempts if a.status == EVICTED]

    @property
    def refused(self) -> int:
        return sum(a.status == REFUSED for a in self.attempts)

    def summary(self) -> str:
        return (
            f"{len(self.evicted)} of {len(self.pods)} pods evicted in {self.seconds:.1f}s, "
            f"{self.refused} evictions refused (HTTP 429)"
        )


def evict_in_turn(
    evictions: Evictions,
    namespace: str,
    pods: list[str],
    *,
    timeout: float = 300,
    retry_after: float = 1.0,
) -> EvictionRound:
    """Evict each of ``pods`` in turn until all are evicted. A refused pod is tried again
    ``retry_after`` seconds later; after each eviction the next pod is tried at once (a budget
    that allows one disruption must refuse it until the evicted pod's replacement is ready)."""
    round_ = EvictionRound(list(pods))
    started = time.monotonic()
    pending = list(pods)
    just_evicted = False
    while pending:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"pods not all evicted in {timeout:.0f}s: {round_.summary()}")
        pod = pending[0]
        status = evictions.evict(namespace, pod)
        round_.attempts.append(Attempt(pod, status, time.monotonic() - started, just_evicted))
        just_evicted = status == EVICTED
        if just_evicted:
            pending.pop(0)
        elif status == REFUSED:
            time.sleep(retry_after)
        else:
            raise RuntimeError(f"evicting {pod}: HTTP {status}, neither evicted nor refused")
    round_.seconds = time.monotonic() - started
    return round_


class _Watching:
    """One watch of the API server in a thread, each event (the object as a dict) handed to
    ``handle``. The first request lists what exists (as ADDED events); each later one goes on
    from the last resource version seen, so no change is missed or seen twice."""

    def __init__(self, list_call: Callable[..., Any], **arguments: Any) -> None:
        self._list_call, self._arguments = list_call, arguments
        self._stop = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0
        self.lock = threading.Lock()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def now(self) -> float:
        return time.monotonic() - self.started

    def handle(self, kind: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in self._events():
                with self.lock:
                    self.handle(event["type"], event["raw_object"])
                if self._stop.is_set():
                    return

    def _events(self) -> Iterator[dict[str, Any]]:
        arguments = dict(self._arguments)
        if self._watch.resource_version:
            arguments["resource_version"] = self._watch.resource_version
        try:
            yield from self._watch.stream(  # type: ignore[no-untyped-call]
                self._list_call, timeout_seconds=2, _request_timeout=10, **arguments
            )
        except (ApiException, OSError, ValueError):
            time.sleep(0.5)  # tried again from the same resource version


class ReadyPods(_Watching):
    """How many of a RetailModel's pods are ready and not going away, at each change."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        core = client.CoreV1Api(api)
        super().__init__(
            core.list_namespaced_pod, namespace=namespace, label_selector=selector(name)
        )
        self._ready: dict[str, bool] = {}
        self.counts: list[tuple[float, int]] = []  # (seconds since the start, ready pods)
        self.names: set[str] = set()  # every ready pod seen

    def handle(self, kind: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self._ready.pop(name, None)
        else:
            self._ready[name] = is_ready(pod)
        count = sum(self._ready.values())
        self.names |= {pod for pod, ready in self._ready.items() if ready}
        if not self.counts or self.counts[-1][1] != count:
            self.counts.append((self.now(), count))

    @property
    def current(self) -> int:
        with self.lock:
            return self.counts[-1][1] if self.counts else 0

    def fewest(self, since: float = 0.0) -> int:
        """The fewest ready pods at any moment from ``since`` on."""
        with self.lock:
            before = [count for at, count in self.counts if at <= since][-1:]
            return min(before + [count for at, count in self.counts if at > since])

    def wait_for(self, count: int, timeout: float, *, without: Iterable[str] = ()) -> float:
        """Wait until exactly ``count`` pods are ready, none of them one of ``without``; when
        that happened (seconds since the start)."""

        def reached() -> bool:
            with self.lock:
                ready = {pod for pod, is_ready in self._ready.items() if is_ready}
            return len(ready) == count and not ready & set(without)

        wait_until(reached, timeout=timeout, what=f"{count} ready pods")
        with self.lock:
            return self.counts[-1][0]


@dataclass(frozen=True)
class Observed:
    """The RetailModel's status at one change of its conditions or replica counts."""

    at: float
    conditions: dict[str, tuple[str, str]]  # type → (status, reason)
    replicas: dict[str, int]  # status.replicas: desired, available
    body: dict[str, Any]


class StatusLog(_Watching):
    """Every change of a RetailModel's conditions (type, status, reason) and replica counts."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        custom = client.CustomObjectsApi(api)
        super().__init__(
            custom.list_namespaced_custom_object,
            group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL,
            field_selector=f"metadata.name={name}",
        )  # fmt: skip
        self.changes: list[Observed] = []

    def handle(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        status = obj.get("status", {})
        conditions = {
            c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])
        }  # fmt: skip
        replicas = dict(status.get("replicas", {}))
        last = self.changes[-1] if self.changes else None
        if last is None or (last.conditions, last.replicas) != (conditions, replicas):
            self.changes.append(Observed(self.now(), conditions, replicas, obj))

    def transitions(self, kind: str) -> list[tuple[float, tuple[str, str]]]:
        """Each change of condition ``kind``: when, and its (status, reason)."""
        with self.lock:
            seen: list[tuple[float, tuple[str, str]]] = []
            for change in self.changes:
                state = change.conditions.get(kind, ("", ""))
                if not seen or seen[-1][1] != state:
                    seen.append((change.at, state))
            return seen

    def replica_counts(self) -> list[tuple[float, dict[str, int]]]:
        with self.lock:
            return [(c.at, c.replicas) for c in self.changes]
