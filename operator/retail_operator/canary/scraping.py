"""Reading a group of predictor pods' ``/metrics``: the canary analysis's only source.

``MetricsReader`` is the small protocol the reconcile depends on (unit tests pass a fake);
``PodMetrics`` is the real adapter. A group is the pods of one Deployment's *current*
ReplicaSet, found by owner uid and revision, not by labels alone: a pod someone else labels
like a predictor, or a pod of the Deployment's previous template (the last candidate), is not
in it. Each pod comes back with what the API server says of it (``PodState``: ready, restarts)
and, from each ready one, ``http://<pod IP>:9090/metrics`` (the predictor's metrics port),
read as Prometheus would and parsed
off the event loop (``evidence.PodReading``). A pod that cannot be read (not ready, no IP, a
timeout, outside ``networks``, an answer over ``METRICS_LIMIT``, which a predictor's tens of
kB never come near, or text that is not the predictor's) has no reading: its traffic is not
counted, and a group nobody can read is silence, which never promotes a candidate.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from retail_contract.metrics import METRICS_PORT
from retail_operator.canary.evidence import InvalidMetrics, PodReading, PodState
from retail_operator.kube import KubeApi

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METRICS_LIMIT = 4 * 1024 * 1024  # bytes read from one pod at most: the operator's memory is shared


Scrape = list[tuple[PodState, PodReading | None]]


REVISION = "deployment.kubernetes.io/revision"


class MetricsReader(Protocol):
    async def sample(self, deployment: Mapping[str, Any]) -> Scrape:
        """Every pod of ``deployment``'s current ReplicaSet, with its reading (None: not
        read)."""
        ...


def _controlled_by(body: Mapping[str, Any], uid: str) -> bool:
    references = body.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == uid for r in references)


def _match_labels(deployment: Mapping[str, Any]) -> str:
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def parse_networks(text: str) -> tuple[Network, ...]:
    """``RETAIL_OPERATOR_SCRAPE_NETWORKS``: comma-separated CIDRs; empty means any address."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_state(pod: dict[str, Any]) -> PodState:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return PodState(
        name=pod["metadata"]["name"],
        uid=pod["metadata"].get("uid", ""),
        ready=_ready(pod),
        restarts=sum(int(s.get("restartCount", 0)) for s in statuses),
        terminating=bool(pod["metadata"].get("deletionTimestamp")),
    )


class PodMetrics:
    def __init__(
        self,
        kube: KubeApi,
        *,
        networks: Sequence[Network] = (),
        timeout: float = 2.0,
        port: int = METRICS_PORT,
    ) -> None:
        self._kube = kube
        self._networks = tuple(networks)
        self._port = port
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _allowed(self, address: str) -> bool:
        if not self._networks:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self._networks)

    async def sample(self, deployment: Mapping[str, Any]) -> Scrape:
        meta = deployment.get("metadata", {})
        namespace, uid = meta.get("namespace", ""), meta.get("uid", "")
        revision = (meta.get("annotations") or {}).get(REVISION)
        selector = _match_labels(deployment)
        if not uid or not revision or not selector:
            return []  # the Deployment controller has not rolled this template out yet
        replica_sets = await self._kube.list("apps/v1", "ReplicaSet", namespace, selector)
        current = [
            rs["metadata"]["uid"]
            for rs in replica_sets
            if _controlled_by(rs, uid)
            and (rs["metadata"].get("annotations") or {}).get(REVISION) == revision
        ]
        if not current:
            return []
        pods = [
            pod
            for pod in await self._kube.list("v1", "Pod", namespace, selector)
            if _controlled_by(pod, current[0])
        ]
        states = [pod_state(pod) for pod in pods]
        addresses = [
            ip
            if state.ready and (ip := pod.get("status", {}).get("podIP")) and self._allowed(ip)
            else None
            for pod, state in zip(pods, states, strict=True)
        ]
        readings = await asyncio.gather(*(self._read(ip) if ip else _none() for ip in addresses))
        return list(zip(states, readings, strict=True))

    async def _read(self, ip: str) -> PodReading | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        host = f"[{ip}]" if ":" in ip else ip
        try:
            async with self._session.get(f"http://{host}:{self._port}/metrics") as response:
                if response.status != 200:
                    return None
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > METRICS_LIMIT:
                        raise ValueError(f"answer over {METRICS_LIMIT} bytes")
                    chunks.append(chunk)
                text = b"".join(chunks).decode()  # Prometheus text is UTF-8
            # Off the event loop: a few MiB of text take about a second to parse.
            return await asyncio.to_thread(PodReading.parse, text)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, InvalidMetrics) as error:
            logger.debug("metrics of pod %s not read: %s", ip, error)
            return None


async def _none() -> None:
    return None
