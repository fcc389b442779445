"""The children's lists and watches: the operator's own informer for the kinds it makes.

kopf watched every Deployment, Service and ConfigMap in the cluster and handed the handlers
only those with the operator's label: its watches cannot ask the API server for a label. It
kept a memory, and a worker with a queue while events arrived, for every object of every
watched kind, 40,000 at 10,000 RetailModels, peak RSS 1,183 MB (bench/notes.md); and a
restart's first lists came as 40,000 events on the event loop that new work shares. kopf's
indexes, which made a restart wait for the lists, cost the square of the objects besides.

So, as controller-runtime's informers do, the operator lists and watches its children itself.
For each child kind and scope (one namespace, or every namespace) a ``ChildWatch`` lists the
objects with the operator's label, page by page, files them in the ``Registry``, and then
watches from the list's resourceVersion: nothing between the list and the watch is missed, and
each event reaches the registry, in order, before anything reacts to it. A watch the API
server ends (every ``WATCH_SECONDS``) or that breaks or goes silent is opened again from the
last version seen (bookmarks included); when that version has expired (410) the kind is listed
again, and a child held that the new list no longer shows, and that nothing newer than the
list has shown, is reported deleted. A list that fails, for any reason, is tried again from
the start. ``listed`` opens once every kind's first list is in: no look starts before that (a
look would find no children and read each from the API server), and a replica takes no Lease
before it (``leadership``). A kind the API server does not serve (404) lists as empty, with a
warning, and is listed again after ``WATCH_SECONDS``.

``Reactions`` hands a child's change to the reconciler's cheap path, one call at a time per
child, with only the latest change waiting: a Deployment's status moves many times while its
pods start, and the reaction needs only the last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from retail_operator.errors import OperatorError
from retail_operator.kube import Expired, KubeApi
from retail_operator.objects import ChildKey, Registry

logger = logging.getLogger(__name__)

PAGE = 500  # objects per page: the API server's own default for its clients' relists
WATCH_SECONDS = 300  # the API server ends each watch after this; it is opened again at once
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

React = Callable[[str, bool, dict[str, Any]], None]  # (kind, deleted, the child's body)


@dataclass
class ChildWatch:
    """One child kind in one scope (``namespace`` None: every namespace), kept in the
    registry: listed, then watched from the list's version, and listed again when that
    version expires."""

    kube: KubeApi  # the lists: one of the calls' connections each
    streams: KubeApi  # the watches: a client of their own, one connection per watch
    registry: Registry
    api_version: str
    kind: str
    namespace: str | None
    selector: str
    react: React
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    lists: int = 0  # lists completed, the first included
    count: int = 0  # children the last list showed

    @property
    def where(self) -> str:
        return f"in {self.namespace}" if self.namespace else "in every namespace"

    async def run(self) -> None:
        while True:
            version = await self._list()
            self.synced.set()
            if not version:  # not served here: nothing to watch
                await asyncio.sleep(WATCH_SECONDS)
                continue
            await self._watch(version)  # returns when the version has expired

    async def _list(self) -> str:
        attempt = 0
        while True:
            try:
                return await self._list_once()
            except Exception as error:  # any failure: a task that ended would gate forever
                await self._back_off(attempt, "listing", error, "trying")
                attempt += 1

    async def _list_once(self) -> str:
        """List every page and file it; report what changed since the registry last heard
        (nothing on the first list: nothing has been reported before it). The version."""
        first = self.lists == 0
        seen: set[ChildKey] = set()
        version = ""
        async for page in self.kube.list_pages(
            self.api_version, self.kind, self.namespace, self.selector, limit=PAGE
        ):
            version = page.resource_version or version
            for body in page.items:
                meta = body["metadata"]
                seen.add((meta["namespace"], self.kind, meta["name"]))
                if self.registry.child_listed(self.kind, body) and not first:
                    self.react(self.kind, False, body)
        for key in self.registry.child_keys(self.kind, self.namespace) - seen:
            gone = self.registry.child_vanished(key, version)
            if gone is not None and not first:
                self.react(self.kind, True, gone)
        self.lists += 1
        self.count = len(seen)
        return version

    async def _watch(self, version: str) -> None:
        """Watch from ``version`` until it expires, opening the watch again as often as it
        ends or breaks, from the last version seen."""
        attempt = 0
        while True:
            opened, events = time.monotonic(), 0
            try:
                async for event in self.streams.watch(
                    self.api_version,
                    self.kind,
                    self.namespace,
                    self.selector,
                    version,
                    seconds=WATCH_SECONDS,
                ):
                    body = event["object"]
                    version = str(body["metadata"].get("resourceVersion") or version)
                    if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
                        continue  # a BOOKMARK: only its version counts
                    deleted = event["type"] == "DELETED"
                    self.registry.child_event(self.kind, deleted, body)
                    self.react(self.kind, deleted, body)
                    attempt, events = 0, events + 1
                if not events and time.monotonic() - opened < 1.0:
                    await asyncio.sleep(1.0)  # ended at once, empty: no busy loop of watches
                continue  # the API server ended the watch: open it again
            except Expired as error:
                logger.info("watching %ss %s: %s; listing again", self.kind, self.where, error)
                return
            except Exception as error:  # any other failure: from the last version seen
                await self._back_off(attempt, "watching", error, "watching")
                attempt += 1

    async def _back_off(self, attempt: int, doing: str, error: Exception, again: str) -> None:
        delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
        logger.warning(
            "%s %ss %s failed (%s); %s again in %.0fs",
            doing,
            self.kind,
            self.where,
            error if isinstance(error, OperatorError) else repr(error),
            again,
            delay,
        )
        await asyncio.sleep(delay)


async def watch_children(
    kube: KubeApi,
    streams: KubeApi,
    registry: Registry,
    kinds: Iterable[tuple[str, str]],
    namespaces: Sequence[str],
    selector: str,
    listed: asyncio.Event,
    react: React,
) -> None:
    """Keep every child of ``kinds`` ((apiVersion, kind) pairs) with ``selector``'s labels in
    ``namespaces`` (none: every namespace) in ``registry``, calling ``react`` on each change
    after the first lists; set ``listed`` once those are in. Runs until cancelled."""
    started = time.monotonic()
    scopes: list[str | None] = list(namespaces) or [None]  # None: every namespace
    watches = [
        ChildWatch(kube, streams, registry, api_version, kind, namespace, selector, react)
        for api_version, kind in kinds
        for namespace in scopes
    ]
    tasks = [
        asyncio.create_task(watch.run(), name=f"retail-children-{watch.kind}") for watch in watches
    ]
    try:
        await asyncio.gather(*(watch.synced.wait() for watch in watches))
        listed.set()
        logger.info(
            "children listed: %d in %.1fs",
            sum(watch.count for watch in watches),
            time.monotonic() - started,
        )
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Reactions(Generic[K, V]):
    """``act`` on each key's latest value, one call at a time per key and at most ``limit``
    at once: a value submitted while one is being acted on waits, and a later one replaces
    it. A key waiting for its turn holds only its value: while 10,000 RetailModels rolled
    out, thousands of reactions at once, each holding the child, the documents and the status
    it had read while it waited for the API server, were the largest part of the operator's
    memory at its peak (bench/notes.md). ``limit`` workers take the waiting keys in the order
    they came, so a key that waits costs no task of its own either (a task each took about
    3 KB, 30 MB while 10,000 Deployments became Available)."""

    def __init__(self, act: Callable[[V], Awaitable[None]], limit: int) -> None:
        self._act = act
        self._limit = limit
        self._waiting: dict[K, V] = {}  # key → its latest value, in order of arrival
        self._acting: set[K] = set()
        self._ready: asyncio.Queue[K] = asyncio.Queue()  # waiting keys not being acted on
        self._workers: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        """Keys waiting or being acted on."""
        return len(self._waiting.keys() | self._acting)

    def submit(self, key: K, value: V) -> None:
        queued = key in self._waiting or key in self._acting
        self._waiting[key] = value
        if not queued:  # an acting key is queued again by its worker when done
            self._ready.put_nowait(key)
        if len(self._workers) < self._limit and self._ready.qsize() > 0:
            self._workers.append(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            value = self._waiting.pop(key)  # the latest, taken once its turn has come
            self._acting.add(key)
            try:
                await self._act(value)
            except Exception:  # one child's failure must not end the others'
                logger.exception("reacting to a change of %s failed", key)
            finally:
                self._acting.discard(key)
                if key in self._waiting:  # changed while acted on: its turn again, last
                    self._ready.put_nowait(key)
                del value

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._waiting.clear()
        self._acting.clear()
