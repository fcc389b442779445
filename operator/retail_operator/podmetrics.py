"""Reading a group of predictor pods' ``/metrics``: the canary analysis's only source.

``MetricsReader`` is the small protocol the reconcile depends on (unit tests pass a fake);
``PodMetrics`` is the real adapter: it lists the pods by label selector through the API
server and reads ``http://<pod IP>:8080/metrics`` from each ready one, as Prometheus would.
A pod that cannot be read (not ready, no IP, a timeout, outside ``networks``, an answer over
``METRICS_LIMIT``, which a predictor's tens of kB never come near) is left out:
its traffic is simply not counted, and a group nobody can read is silence, which never
promotes a candidate.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp

from retail_operator.canary import PodSample, Samples
from retail_operator.kube import KubeApi
from retail_operator.rendering import PREDICTOR_PORT

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METRICS_LIMIT = 4 * 1024 * 1024  # bytes read from one pod at most: the operator's memory is shared


class MetricsReader(Protocol):
    async def sample(self, namespace: str, selector: str) -> Samples:
        """Every readable pod matching ``selector``, by pod name and uid."""
        ...


def parse_networks(text: str) -> tuple[Network, ...]:
    """``RETAIL_OPERATOR_SCRAPE_NETWORKS``: comma-separated CIDRs; empty means any address."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class PodMetrics:
    def __init__(
        self,
        kube: KubeApi,
        *,
        networks: Sequence[Network] = (),
        timeout: float = 2.0,
        port: int = PREDICTOR_PORT,
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

    async def sample(self, namespace: str, selector: str) -> Samples:
        pods = await self._kube.list("v1", "Pod", namespace, selector)
        readable = [
            (f"{pod['metadata']['name']}/{pod['metadata'].get('uid', '')}", ip)
            for pod in pods
            if _ready(pod) and (ip := pod.get("status", {}).get("podIP")) and self._allowed(ip)
        ]
        read = await asyncio.gather(*(self._read(ip) for _, ip in readable))
        return {key: sample for (key, _), sample in zip(readable, read, strict=True) if sample}

    async def _read(self, ip: str) -> PodSample | None:
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
                return PodSample.parse(b"".join(chunks).decode())  # Prometheus text is UTF-8
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            logger.debug("metrics of pod %s not read: %s", ip, error)
            return None
