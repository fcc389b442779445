"""Lists and watches of one kind, filed where the operator keeps what it knows: an informer.

The operator watches the RetailModels and its children itself, as controller-runtime's
informers do, not through kopf. kopf's watcher hands its workers one object per turn of the
event loop: a restart's list of 10,000 RetailModels took 10,000 turns, each as long as every
reconcile ready to run made it (about 0.1 s in a resync storm), so the list took minutes to
file; the watch that followed asked for a version the API server no longer held (410), kopf
listed again, and a RetailModel made meanwhile waited behind both lists, minutes late
(bench/notes.md). An ``Informer`` files a whole page of a list in one turn.

For one kind in one scope (one namespace, or every namespace) an ``Informer`` lists the objects
matching its label selector, page by page, files each (``_file_listed``), and then watches from
the list's resourceVersion: nothing between the list and the watch is missed, and each event is
filed (``_file_event``) in order. A watch the API server ends (every ``WATCH_SECONDS``) or
that breaks or goes silent is opened again from the last version seen (bookmarks included);
when that version has expired (410) the kind is listed again, and what is held that the new
list no longer shows is for the subclass to settle (``_file_unlisted``: gone, unless something
newer than the list has shown it). A list that fails, for any reason, is tried again from the
start. ``synced`` opens once the first list is in. A kind the API server does not serve (404)
lists as empty, with a warning, and is listed again every ``NOT_SERVED_SECONDS``: a
RetailModel CRD installed (or deleted and made again) after the operator started is served
within seconds, as kopf's discovery of new CRDs did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from retail_operator.errors import OperatorError
from retail_operator.kube import Expired, KubeApi

logger = logging.getLogger(__name__)

PAGE = 500  # objects per page: the API server's own default for its clients' relists
WATCH_SECONDS = 300  # the API server ends each watch after this; it is opened again at once
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
NOT_SERVED_SECONDS = 10.0  # a kind the API server does not serve (yet) is listed again after this


class Informer(ABC):
    """One kind in one scope (``namespace`` None: every namespace): listed, then watched from
    the list's version, and listed again when that version expires. Subclasses say where
    each object goes."""

    def __init__(
        self,
        kube: KubeApi,
        streams: KubeApi,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str,
    ) -> None:
        """``kube`` makes the lists (one of the calls' connections each); ``streams``, a client
        of its own, the watches (one connection per watch, held for minutes)."""
        self.kube = kube
        self.streams = streams
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.synced = asyncio.Event()
        self.lists = 0  # lists completed, the first included
        self.count = 0  # objects the last list showed
        self.served = True  # whether the API server served the kind at the last list

    @abstractmethod
    def _file_listed(self, body: dict[str, Any], first: bool) -> Any:
        """File an object from a list page (``first``: of the first list); its key."""

    @abstractmethod
    def _file_unlisted(self, seen: set[Any], version: str, first: bool) -> None:
        """A list of ``version`` showed the objects keyed ``seen`` and no others in scope."""

    @abstractmethod
    def _file_event(self, deleted: bool, body: dict[str, Any]) -> None:
        """File a watch event (ADDED, MODIFIED, or DELETED when ``deleted``)."""

    @property
    def where(self) -> str:
        return f"in {self.namespace}" if self.namespace else "in every namespace"

    async def run(self) -> None:
        while True:
            version = await self._list()
            self.synced.set()
            if self.served != bool(version):
                self.served = bool(version)
                if not self.served:  # said once, not at every list while it lasts
                    logger.warning(
                        "%ss %s: not served by the API server (404); listing again every %.0fs",
                        self.kind, self.where, NOT_SERVED_SECONDS,
                    )  # fmt: skip
                else:
                    logger.info("%ss %s: served again", self.kind, self.where)
            if not version:  # not served here: nothing to watch
                await asyncio.sleep(NOT_SERVED_SECONDS)
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
        """List every page, filing each page in one go (no turn of the loop per object), then
        settle what the list no longer shows. The list's version."""
        first = self.lists == 0
        seen: set[Any] = set()
        version = ""
        async for page in self.kube.list_pages(
            self.api_version, self.kind, self.namespace, self.selector, limit=PAGE
        ):
            version = page.resource_version or version
            for body in page.items:
                seen.add(self._file_listed(body, first))
        self._file_unlisted(seen, version, first)
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
                    self._file_event(event["type"] == "DELETED", body)
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


async def inform(informers: Iterable[Informer], listed: asyncio.Event) -> None:
    """Run ``informers`` until cancelled; set ``listed`` once every one's first list is in."""
    started = time.monotonic()
    running = list(informers)
    tasks = [
        asyncio.create_task(informer.run(), name=f"retail-informer-{informer.kind}")
        for informer in running
    ]
    try:
        await asyncio.gather(*(informer.synced.wait() for informer in running))
        listed.set()
        counts: dict[str, int] = {}
        for informer in running:
            counts[informer.kind] = counts.get(informer.kind, 0) + informer.count
        logger.info(
            "listed in %.1fs: %s",
            time.monotonic() - started,
            ", ".join(f"{count} {kind}s" for kind, count in counts.items()),
        )
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
