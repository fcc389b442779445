"""A deliberately plain async Kubernetes client for the scale benchmark: apply, list, watch.

It speaks HTTPS to the API server with the admin client certificate from a kubeconfig, so the
baseline ("the same objects created directly, as fast as the API server accepts them") costs
the server exactly what the operator's own server-side applies cost, and the watches that time
the operator are independent of the operator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "retail-bench"
_LABEL = re.compile(r'(\w+)="([^"]*)"')
# What paces a burst of new Services at the API server: each Service create (server-side
# apply) allocates a ClusterIP, which creates an IPAddress object through the server itself.
TIMED = ("APPLY services", "POST ipaddresses", "ClusterIP allocation")
_ALLOCATION = "kube_apiserver_clusterip_allocator_allocation_duration_seconds"
_DURATION = "apiserver_request_duration_seconds"
_SCRAPED = frozenset(
    {"apiserver_request_total"}
    | {f"{name}_{part}" for name in (_DURATION, _ALLOCATION) for part in ("sum", "count")}
)


def _ssl_context(kubeconfig: Path, scratch: Path) -> tuple[str, ssl.SSLContext]:
    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    scratch.mkdir(parents=True, exist_ok=True)
    cert, key = scratch / "client.crt", scratch / "client.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.touch(mode=0o600)
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    context.load_cert_chain(cert, key)
    return cluster["server"], context


class Kube:
    def __init__(self, kubeconfig: Path, scratch: Path, *, connections: int = 64) -> None:
        self.server, self._ssl = _ssl_context(kubeconfig, scratch)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.calls = 0

    async def __aenter__(self) -> Kube:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Kube as an async context manager"
        return self._session

    async def apply(self, path: str, document: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, retried on 429/5xx/conflict as any client would."""
        for attempt in range(20):
            self.calls += 1
            async with self.session.patch(
                self.server + path,
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                data=json.dumps(document),
                headers={"Content-Type": APPLY, "Accept": "application/json"},
            ) as response:
                if response.status in (429, 500, 503, 504, 409):
                    await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                body = await response.text()
                if response.status >= 300:
                    raise RuntimeError(f"PATCH {path}: {response.status} {body[:300]}")
                result: dict[str, Any] = json.loads(body)
                return result
        raise RuntimeError(f"PATCH {path}: still refused after retries")

    async def get(self, path: str) -> dict[str, Any]:
        self.calls += 1
        async with self.session.get(self.server + path) as response:
            body = await response.text()
            if response.status >= 300:
                raise RuntimeError(f"GET {path}: {response.status} {body[:300]}")
            result: dict[str, Any] = json.loads(body)
            return result

    async def server_figures(self) -> tuple[Counter[str], dict[str, tuple[float, int]]]:
        """The API server's own figures so far, from one scrape of its metrics: requests by
        verb and resource, and (seconds, how many) for what paces a burst of new Services
        (``TIMED``)."""
        async with self.session.get(self.server + "/metrics") as response:
            text = await response.text()
        counts: Counter[str] = Counter()
        seconds: dict[str, float] = {}
        how_many: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name not in _SCRAPED:
                continue
            labels_text, _, value = rest.rpartition(" ")
            labels = dict(_LABEL.findall(labels_text))
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            key = f"{labels.get('verb', '?')} {resource}"
            if name == "apiserver_request_total":
                counts[key] += int(float(value))
                continue
            if name.startswith(_ALLOCATION):
                key = "ClusterIP allocation"
            if key not in TIMED:
                continue
            if name.endswith("_sum"):
                seconds[key] = seconds.get(key, 0.0) + float(value)
            else:
                how_many[key] = how_many.get(key, 0) + int(float(value))
        return counts, {key: (seconds.get(key, 0.0), how_many.get(key, 0)) for key in TIMED}

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Watch events from ``resource_version`` on, reconnecting when the server ends one."""
        version = resource_version
        while True:
            params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true"}
            async with self.session.get(self.server + path, params=params) as response:
                async for line in response.content:
                    if not line.strip():
                        continue
                    event: dict[str, Any] = json.loads(line)
                    version = event["object"]["metadata"].get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        yield event


class Recorder:
    """First time each name reached a state, in seconds since ``start``."""

    def __init__(self, names: set[str], start: float) -> None:
        self.names = names
        self.start = start
        self.times: dict[str, float] = {}
        self.done = asyncio.Event()
        if not names:
            self.done.set()

    def reached(self, name: str) -> None:
        if name in self.names and name not in self.times:
            self.times[name] = time.monotonic() - self.start
            if len(self.times) == len(self.names):
                self.done.set()

    @property
    def last(self) -> float:
        return max(self.times.values()) if self.times else float("nan")


async def follow(
    kube: Kube,
    path: str,
    resource_version: str,
    rules: list[tuple[Recorder, Callable[[dict[str, Any]], str | None]]],
) -> None:
    """Feed every watched object to each recorder whose rule names it (None: not yet)."""
    async for event in kube.watch(path, resource_version):
        for recorder, rule in rules:
            name = rule(event["object"])
            if name is not None:
                recorder.reached(name)
