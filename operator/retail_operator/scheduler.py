"""When each RetailModel is reconciled: at once on a spec change, then periodically.

kopf's timers and daemons need a finalizer on every object; this operator has nothing external
to clean up, so it keeps no finalizer and schedules for itself instead: one loop, one due time
per RetailModel, a bounded number of reconciles at once. A spec change (generation ahead of
``status.observedGeneration``), a new object or a restart makes a RetailModel due now; a
pending scan makes it due in seconds; otherwise it comes round every ``resync_seconds``.
With leader election, the loop runs only while ``leading`` is set (a standby keeps the bodies
its watches bring, and makes every one due the moment it starts leading).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Mapping
from typing import Any

from retail_operator import metrics
from retail_operator.errors import OperatorError, TemporaryError
from retail_operator.reconcile import Reconciler

logger = logging.getLogger(__name__)

Key = tuple[str, str]


def _resource_version(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        resync_seconds: float,
        concurrency: int,
        leading: asyncio.Event | None = None,
    ) -> None:
        self._reconciler = reconciler
        self._leading = leading
        self._resync = resync_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # changed while a reconcile was running
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def body(self, key: Key) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event for a RetailModel: remember it, and make it due if its spec moved."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        known = self._bodies.get(key)
        if known is not None and _resource_version(known) > _resource_version(body) > 0:
            return  # an older event than what we already wrote
        self._bodies[key] = {
            "metadata": dict(meta),
            "spec": dict(body.get("spec") or {}),
            "status": dict(body.get("status") or {}),
        }
        generation = meta.get("generation", 0)
        observed = (body.get("status") or {}).get("observedGeneration")
        if known is None or observed != generation:
            self.schedule(key, 0.0)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._bodies.pop(key, None)
        self._due.pop(key, None)
        self._reconciler.forget(namespace, name)
        metrics.QUEUE_DEPTH.set(len(self._due))

    def catch_up(self) -> None:
        """Make every known RetailModel due now (a new leader cannot know what the last one
        finished)."""
        for key in self._bodies:
            self.schedule(key, 0.0)

    def update_status(self, key: Key, status: Mapping[str, Any]) -> None:
        if key in self._bodies:
            self._bodies[key]["status"] = dict(status)

    def schedule(self, key: Key, delay: float) -> None:
        if key in self._running:
            if delay == 0.0:
                self._again.add(key)
            return
        when = time.monotonic() + delay
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        metrics.QUEUE_DEPTH.set(len(self._due))
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self._leading is not None:
                await self._leading.wait()
            self._wake.clear()
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                if self._leading is not None and not self._leading.is_set():
                    break  # leadership lost meanwhile: nothing more starts
                when, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by an earlier or later schedule, or forgotten
                del self._due[key]
                metrics.QUEUE_DEPTH.set(len(self._due))
                metrics.DUE_BACKLOG.set(sum(1 for due in self._due.values() if due <= now))
                await self._slots.acquire()
                self._running.add(key)
                task = asyncio.create_task(self._reconcile(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            timeout = self._heap[0][0] - time.monotonic() if self._heap else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _reconcile(self, key: Key) -> None:
        delay = self._resync
        result = "ok"
        started = time.monotonic()
        try:
            body = self._bodies.get(key)
            if body is None:
                result = "gone"
                return
            outcome = await self._reconciler.reconcile(body)
            self.update_status(key, outcome.status)
            if outcome.retry_after is not None:
                delay = outcome.retry_after
        except TemporaryError as error:
            logger.warning("%s/%s: %s; retrying in %.0fs", *key, error, error.retry_after)
            delay = error.retry_after
            result = "retry"
        except OperatorError as error:
            logger.error("%s/%s: %s", *key, error)
            result = "error"
        except Exception:
            logger.exception("%s/%s: reconcile failed unexpectedly", *key)
            delay = min(self._resync, 30.0)
            result = "crash"
        finally:
            self._running.discard(key)
            self._slots.release()
            metrics.RECONCILES.labels(result).inc()
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        if key in self._bodies:
            self.schedule(key, 0.0 if key in self._again else delay)
            self._again.discard(key)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
