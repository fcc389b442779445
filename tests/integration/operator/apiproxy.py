"""A proxy in front of the local API server that can hold requests unanswered, and that
records every write it forwards.

The operator under test gets a kubeconfig naming the proxy (plain HTTP on loopback); the proxy
forwards every request to the real API server over TLS with the cluster's admin credentials,
streaming the answer (watches included). A test sets ``hold`` to a predicate on (method, path,
body): the first matching request is never forwarded nor answered, ``held`` is set, and the
test can look at the cluster while the operator waits in exactly that call, then kill it.
``stall`` holds *every* matching request that way (a connection that stopped answering for
some calls only). ``delay`` answers matching requests that many seconds late (a slow list).
``refuse`` answers matching requests 403 Forbidden, as the API server does for a verb the
caller's RBAC lacks, without forwarding them; ``refused`` counts them. ``expire`` answers
matching requests (watches) as the API server does a watch from a resourceVersion it no longer
has: 200, then one ERROR event carrying a 410 Expired Status; ``expired`` counts them.
``reads`` lists each GET forwarded, path and query. ``writes`` lists each write forwarded,
with when it was received and when the API server had answered it (``time.monotonic``, this
process's clock).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

Hold = Callable[[str, str, bytes], bool]
Delay = Callable[[str, str], float]  # (method, path with query) → seconds
Refuse = Callable[[str, str], bool]  # (method, path with query) → answer 403
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Write:
    method: str
    path: str
    received: float
    answered: float
    status: int


# Hop-by-hop headers and what the proxy itself decides (framing, encoding, credentials).
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "host",
    "authorization",
}


class ApiProxy:
    def __init__(self, kubeconfig: Path, directory: Path) -> None:
        document = yaml.safe_load(kubeconfig.read_text())
        cluster = document["clusters"][0]["cluster"]
        user = document["users"][0]["user"]
        files = {}
        for name, key in (
            ("ca.crt", "certificate-authority-data"),
            ("client.crt", "client-certificate-data"),
            ("client.key", "client-key-data"),
        ):
            files[name] = directory / name
            files[name].write_bytes(base64.b64decode(cluster.get(key) or user[key]))
        self._tls = ssl.create_default_context(cafile=str(files["ca.crt"]))
        self._tls.load_cert_chain(str(files["client.crt"]), str(files["client.key"]))
        self._upstream = str(cluster["server"])
        self._directory = directory
        self.hold: Hold | None = None
        self.stall: Hold | None = None
        self.delay: Delay | None = None
        self.refuse: Refuse | None = None
        self.refused = 0
        self.expire: Refuse | None = None
        self.expired = 0
        self.held = threading.Event()
        self.writes: list[Write] = []
        self.reads: list[str] = []
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the API proxy did not start")

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Cancel a handler whose client went away (the held one, once the operator is killed).
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        body = await request.read()
        hold, stall = self.hold, self.stall
        if hold is not None and not self.held.is_set() and hold(request.method, request.path, body):
            self.held.set()
            await asyncio.Event().wait()  # until the client goes away (it is killed)
        if stall is not None and stall(request.method, request.path, body):
            await asyncio.Event().wait()  # until the client gives up
        if request.method == "GET":
            self.reads.append(request.path_qs)
        refuse = self.refuse
        if refuse is not None and refuse(request.method, request.path_qs):
            self.refused += 1
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f"forbidden by the test's proxy: {request.method} {request.path}",
                    "reason": "Forbidden",
                    "code": 403,
                },
                status=403,
            )
        expire = self.expire
        if expire is not None and expire(request.method, request.path_qs):
            self.expired += 1
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": "too old resource version: 1 (2) [the test's proxy]",
                "reason": "Expired",
                "code": 410,
            }
            line = json.dumps({"type": "ERROR", "object": status}) + "\n"
            return web.Response(text=line, content_type="application/json")
        delay = self.delay
        if delay is not None:
            await asyncio.sleep(delay(request.method, request.path_qs))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._session.request(
            request.method,
            self._upstream + request.path_qs,
            headers=headers,
            data=body or None,
            ssl=self._tls,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_FORWARDED
                },
            )
            if request.method in WRITES:
                write = Write(
                    request.method, request.path, received, time.monotonic(), upstream.status
                )
                self.writes.append(write)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():  # watches stream, event by event
                await response.write(chunk)
            await response.write_eof()
            return response

    def kubeconfig(self) -> Path:
        """A kubeconfig naming the proxy; the proxy adds the real credentials upstream."""
        path = self._directory / "kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "proxied", "user": {"token": "added-by-the-proxy"}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxied"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )
        return path

    def close(self) -> None:
        async def shutdown() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
