"""When each RetailModel is reconciled: at once on a spec change, then periodically.

kopf's timers and daemons need a finalizer on every object; this operator has nothing external
to clean up, so it keeps no finalizer and schedules for itself instead: one loop, one due time
per RetailModel, a bounded number of reconciles at once. A spec change (generation ahead of
``status.observedGeneration``), a new object or a restart makes a RetailModel due now; after a
reconcile, the next look is the earliest of every reason to look again: the resync (new
findings for the running image, a moved tag, a new model object, drift), a pending scan, the
end of a scan exception, a canary's next analysis step, a retry after an error
(``errors.retry_after``), and never later than the resync.

With leader election, the loop runs only while ``leading`` is set. Losing the lease cancels
every reconcile in flight (``pause``); their writes are fenced anyway (``kube``). Regaining it
forgets what this replica did meanwhile and makes every RetailModel due (``resume``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time

from retail_operator import errors, metrics
from retail_operator.errors import NotLeader, OperatorError, TemporaryError
from retail_operator.objects import Key, Registry
from retail_operator.reconcile import Reconciler

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        registry: Registry,
        *,
        resync_seconds: float,
        concurrency: int,
        leading: asyncio.Event | None = None,
    ) -> None:
        self._reconciler = reconciler
        self._registry = registry
        self._leading = leading
        self._resync = resync_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._again: set[Key] = set()  # changed while a reconcile was running
        self._wake = asyncio.Event()

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._reconciler.forget(key)
        metrics.QUEUE_DEPTH.set(len(self._due))

    def resume(self) -> None:
        """Leading (again): what this replica did before cannot be trusted to be current, so
        forget it and make every known RetailModel due now."""
        self._registry.reset()
        for tracked in self._registry:
            self.schedule(tracked.key, 0.0)

    def pause(self) -> None:
        """Not leading: cancel every reconcile in flight (the loop starts no more)."""
        for task in self._running.values():
            task.cancel()

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
                task = asyncio.create_task(self._reconcile(key))
                self._running[key] = task
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
            tracked = self._registry.get(key)
            if tracked is None:
                result = "gone"
                return
            outcome = await self._reconciler.reconcile(tracked)
            if outcome.retry_after is not None:
                delay = min(delay, outcome.retry_after)
        except asyncio.CancelledError:
            result = "cancelled"  # leadership lost: the next leader looks again
            return
        except NotLeader:
            result = "cancelled"
            return
        except TemporaryError as error:
            delay = errors.retry_after(error, self._resync)
            logger.warning("%s/%s: %s; retrying in %.0fs", *key, error, delay)
            result = "retry"
        except OperatorError as error:
            delay = errors.retry_after(error, self._resync)
            logger.error("%s/%s: %s", *key, error)
            result = "error"
        except Exception as error:
            delay = errors.retry_after(error, self._resync)
            logger.exception("%s/%s: reconcile failed unexpectedly", *key)
            result = "crash"
        finally:
            self._running.pop(key, None)
            self._slots.release()
            metrics.RECONCILES.labels(result).inc()
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        if self._registry.get(key) is not None:
            self.schedule(key, 0.0 if key in self._again else delay)
            self._again.discard(key)

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
