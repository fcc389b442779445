"""The children's informers, and the reactions to a child's change.

kopf watched every Deployment, Service and ConfigMap in the cluster and handed the handlers
only those with the operator's label: its watches cannot ask the API server for a label. It
kept a memory, and a worker with a queue while events arrived, for every object of every
watched kind, 40,000 at 10,000 RetailModels, peak RSS 1,183 MB (bench/notes.md); and a
restart's first lists came as 40,000 events on the event loop that new work shares. kopf's
indexes, which made a restart wait for the lists, cost the square of the objects besides.

So the operator lists and watches its children itself (``informer``): a ``ChildWatch`` per
child kind and scope asks for the operator's label and files each child in the ``Registry``,
each event before anything reacts to it. The first list is no news (nothing has been reported
before it); after it, each change is reported to ``react``, and a child held that a relist no
longer shows, and that nothing newer than the list has shown, is reported deleted.

``Reactions`` hands a child's change to the reconciler's cheap path, one call at a time per
child, with only the latest change waiting: a Deployment's status moves many times while its
pods start, and the reaction needs only the last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from retail_operator.informer import Informer
from retail_operator.kube import KubeApi
from retail_operator.objects import ChildKey, Registry

logger = logging.getLogger(__name__)

React = Callable[[str, bool, dict[str, Any]], None]  # (kind, deleted, the child's body)


class ChildWatch(Informer):
    """One child kind in one scope, kept in the registry, its changes after the first list
    reported to ``react``."""

    def __init__(
        self,
        kube: KubeApi,
        streams: KubeApi,
        registry: Registry,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str,
        react: React,
    ) -> None:
        super().__init__(kube, streams, api_version, kind, namespace, selector)
        self.registry = registry
        self.react = react

    def _file_listed(self, body: dict[str, Any], first: bool) -> ChildKey:
        meta = body["metadata"]
        if self.registry.child_listed(self.kind, body) and not first:
            self.react(self.kind, False, body)
        return (meta["namespace"], self.kind, meta["name"])

    def _file_unlisted(self, seen: set[Any], version: str, first: bool) -> None:
        for key in self.registry.child_keys(self.kind, self.namespace) - seen:
            gone = self.registry.child_vanished(key, version)
            if gone is not None and not first:
                self.react(self.kind, True, gone)

    def _file_event(self, deleted: bool, body: dict[str, Any]) -> None:
        self.registry.child_event(self.kind, deleted, body)
        self.react(self.kind, deleted, body)


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
