"""When each RetailModel is reconciled: at once on a change, then periodically.

kopf's timers and daemons need a finalizer on every object; this operator has nothing external
to clean up, so it keeps no finalizer and schedules for itself instead: one loop, one due time
per RetailModel, a bounded number of reconciles at once. A spec change (generation ahead of
``status.observedGeneration``), a new object or a restart makes a RetailModel due now; after a
reconcile, the next look is the earliest of every reason to look again: the resync (new
findings for the running image, a moved tag, a new model object, drift), a pending scan, the
end of a scan exception, a canary's next analysis step, a retry after an error
(``errors.retry_after``), and never later than the resync.

Two lanes share the slots. A change (``hurry``: a new RetailModel, a new spec, a new model
object) goes ahead of every periodic look that is due, first come first served; the periodic
looks (``schedule``) go by due time. With thousands of RetailModels a resync storm keeps
thousands of looks due at once, and a new RetailModel behind them would wait minutes. A
change's reconcile is marked ``lanes.URGENT``, so its API and AWS calls go ahead of the looks'
too, and a change whose reconcile failed (an API server too slow to answer in time) is retried
in the change lane: as a periodic look it would wait behind the storm again.

With leader election, the loop runs only while ``leading`` is set. Losing the lease cancels
every reconcile in flight (``pause``); their writes are fenced anyway (``kube``). Regaining it
forgets what this replica did meanwhile and makes every RetailModel due (``resume``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time

from retail_operator import errors, lanes, metrics
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
        ready: asyncio.Event | None = None,
    ) -> None:
        """``ready``: no look starts before it is set (the children listed: ``childwatch``)."""
        self._reconciler = reconciler
        self._ready = ready
        self._registry = registry
        self._leading = leading
        self._resync = resync_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._changed: dict[Key, None] = {}  # hurried, in arrival order (an ordered set)
        self._running: dict[Key, asyncio.Task[None]] = {}
        # looked for while its reconcile was running: True for a change, False for a look now
        self._again: dict[Key, bool] = {}
        self._backlog_counted = 0.0
        self._retries: dict[Key, asyncio.TimerHandle] = {}  # failed changes, hurried when due
        self._wake = asyncio.Event()

    def forget(self, key: Key) -> None:
        self._cancel_retry(key)
        self._due.pop(key, None)
        self._changed.pop(key, None)
        self._reconciler.forget(key)
        self._count()

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
        for key in list(self._retries):
            self._cancel_retry(key)

    def _cancel_retry(self, key: Key) -> None:
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _retry_change(self, key: Key, delay: float) -> None:
        """A change whose reconcile failed: hurried again in ``delay`` seconds."""

        def due() -> None:
            self._retries.pop(key, None)
            self.hurry(key)

        self._cancel_retry(key)
        self._retries[key] = asyncio.get_running_loop().call_later(delay, due)

    def schedule(self, key: Key, delay: float) -> None:
        """Look at ``key`` again in ``delay`` seconds (or sooner if already due sooner)."""
        if key in self._running:
            if delay == 0.0:
                self._again.setdefault(key, False)
            return
        if key in self._changed:
            return
        when = time.monotonic() + delay
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        self._count()
        self._wake.set()

    def hurry(self, key: Key) -> None:
        """``key`` changed: reconcile it ahead of every periodic look (again, if running)."""
        if key in self._running:
            self._again[key] = True
            return
        self._due.pop(key, None)  # its heap entry is stale from now on
        self._changed[key] = None
        self._count()
        self._wake.set()

    def _count(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._due) + len(self._changed))

    def _next(self, now: float) -> tuple[Key, bool] | None:
        """The next RetailModel to reconcile, and whether it changed: the oldest change, else
        the most overdue look."""
        if self._changed:
            key = next(iter(self._changed))
            del self._changed[key]
            return key, True
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            if self._due.get(key) == when:  # else superseded by another schedule, or forgotten
                del self._due[key]
                return key, False
        return None

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready.wait()
        while True:
            if self._leading is not None:
                await self._leading.wait()
            await self._slots.acquire()  # a free slot first, then the best key at that moment
            self._wake.clear()
            if self._leading is not None and not self._leading.is_set():
                self._slots.release()  # leadership lost meanwhile: nothing more starts
                continue
            now = time.monotonic()
            found = self._next(now)
            if found is not None:
                key, changed = found
                self._count()
                if now - self._backlog_counted >= 1.0:  # O(RetailModels): once a second at most
                    self._backlog_counted = now
                    due = sum(1 for when in self._due.values() if when <= now)
                    metrics.DUE_BACKLOG.set(due + len(self._changed))
                self._running[key] = asyncio.create_task(self._reconcile(key, changed))
                continue
            self._slots.release()
            metrics.DUE_BACKLOG.set(0)
            timeout = self._heap[0][0] - now if self._heap else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _reconcile(self, key: Key, changed: bool = False) -> None:
        lanes.URGENT.set(changed)  # this task's own context, and the tasks it starts
        delay: float | None = self._resync  # None: cancelled, the next leader's resume looks
        result = "ok"
        started = time.monotonic()
        try:
            tracked = self._registry.get(key)
            if tracked is None:
                result = "gone"
                return
            outcome = await self._reconciler.reconcile(tracked)
            if outcome.retry_after is not None:
                delay = min(self._resync, outcome.retry_after)
        except (asyncio.CancelledError, NotLeader):
            result, delay = "cancelled", None  # leadership lost
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
        # Asked for while running (a change, or a resume racing the cancel it follows): the ask
        # stands even when this reconcile was cancelled, or the RetailModel is never looked at.
        asked = self._again.pop(key, None)
        if self._registry.get(key) is None:
            return
        if asked:
            self.hurry(key)
        elif asked is not None:
            self.schedule(key, 0.0)
        elif delay is not None and changed and result in ("retry", "error", "crash"):
            self._retry_change(key, delay)
        elif delay is not None:
            self.schedule(key, delay)

    async def stop(self) -> None:
        for key in list(self._retries):
            self._cancel_retry(key)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
