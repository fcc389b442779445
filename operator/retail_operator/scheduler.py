"""When each RetailModel is reconciled: at once on a change, then periodically.

kopf's timers and daemons need a finalizer on every object; this operator has nothing external
to clean up, so it keeps no finalizer and schedules for itself instead: one loop, one due time
per RetailModel, a bounded number of reconciles at once. A spec change (generation ahead of
``status.observedGeneration``), a new object or a restart makes a RetailModel due now; after a
reconcile, the next look is the earliest of every reason to look again: the resync (new
findings for the running image, a moved tag, a new model object, drift), a pending scan, the
end of a scan exception, a canary's next analysis step, a retry after an error
(``errors.retry_after``), and never later than the resync.

Three lanes share the slots, each first come first served but the looks. A change
(``hurry``: a new RetailModel, a new spec, a new model object) goes ahead of everything; a
change whose reconcile failed (an API server too slow to answer in time) is retried next, in a
lane of its own; the periodic looks (``schedule``) come last, by due time. With thousands of
RetailModels a resync storm keeps thousands of looks due at once, and a new RetailModel behind
them would wait minutes; as a periodic look a failed change would wait behind the storm again.
Retries go behind new changes: at 10,000 RetailModels, while the API server timed Service
creates out, thousands of retried changes were coming back every few seconds, and a new
RetailModel queued behind them took seconds to get its Deployment. A new change's reconcile is
marked ``lanes.URGENT``, so its API and AWS calls go ahead of every other reconcile's too; a
retry's calls wait their turn with the looks'.

A RetailModel whose reconciles keep failing backs off: each failure in a row doubles the
error's own delay (3 s for an API server that did not answer), never past the resync, as
client-go's workqueue does. Retrying a timed-out call every 3 s only adds to the load that
timed it out.

With leader election, the loop runs only while ``leading`` is set. Losing the lease cancels
every reconcile in flight (``pause``); their writes are fenced anyway (``kube``). Regaining it
forgets what this replica did meanwhile and makes every RetailModel due (``resume``).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
import time

from retail_operator import errors, lanes, metrics
from retail_operator.errors import NotLeader, OperatorError, TemporaryError
from retail_operator.objects import Key, Registry
from retail_operator.reconcile import Reconciler

logger = logging.getLogger(__name__)


class Lane(enum.Enum):
    """Why a reconcile runs, in the order the lanes are served."""

    CHANGE = "change"  # a new RetailModel, a new spec, a new model object
    RETRY = "retry"  # a change whose reconcile failed, due again
    LOOK = "look"  # a periodic look


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
        """``ready``: no look starts before it is set (every kind listed: ``informer``)."""
        self._reconciler = reconciler
        self._ready = ready
        self._registry = registry
        self._leading = leading
        self._resync = resync_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._changed: dict[Key, None] = {}  # hurried, in arrival order (an ordered set)
        self._retried: dict[Key, None] = {}  # failed changes due again, in order
        self._failures: dict[Key, int] = {}  # failed reconciles in a row
        self._queued: dict[Key, float] = {}  # when a change or a retry joined its lane
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
        self._retried.pop(key, None)
        self._failures.pop(key, None)
        self._queued.pop(key, None)
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
        """A change whose reconcile failed: in the retry lane in ``delay`` seconds."""

        def due() -> None:
            self._retries.pop(key, None)
            self._retry(key)

        self._cancel_retry(key)
        self._retries[key] = asyncio.get_running_loop().call_later(delay, due)

    def schedule(self, key: Key, delay: float) -> None:
        """Look at ``key`` again in ``delay`` seconds (or sooner if already due sooner)."""
        if key in self._running:
            if delay == 0.0:
                self._again.setdefault(key, False)
            return
        if key in self._changed or key in self._retried:
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
        self._cancel_retry(key)  # this reconcile is the retry too
        if key in self._running:
            self._again[key] = True
            return
        self._due.pop(key, None)  # its heap entry is stale from now on
        self._retried.pop(key, None)  # a retry changed again: in the change lane now
        self._queued.setdefault(key, time.monotonic())
        self._changed[key] = None
        self._count()
        self._wake.set()

    def _retry(self, key: Key) -> None:
        """A failed change is due again: behind the new changes, ahead of the looks."""
        if key in self._running or key in self._changed:
            return  # being reconciled, or changed again: that reconcile is the retry
        self._due.pop(key, None)
        self._retried[key] = None
        self._queued[key] = time.monotonic()
        self._count()
        self._wake.set()

    def _count(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._due) + len(self._changed) + len(self._retried))

    def _next(self, now: float) -> tuple[Key, Lane] | None:
        """The next RetailModel to reconcile, and its lane: the oldest change, else the oldest
        retry, else the most overdue look."""
        for lane, queue in ((Lane.CHANGE, self._changed), (Lane.RETRY, self._retried)):
            if queue:
                key = next(iter(queue))
                del queue[key]
                waited = now - self._queued.pop(key, now)
                metrics.QUEUE_WAIT_SECONDS.labels(lane.value).observe(waited)
                return key, lane
        while self._heap and self._heap[0][0] <= now:
            when, key = heapq.heappop(self._heap)
            if self._due.get(key) == when:  # else superseded by another schedule, or forgotten
                del self._due[key]
                metrics.QUEUE_WAIT_SECONDS.labels(Lane.LOOK.value).observe(now - when)
                return key, Lane.LOOK
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
                key, lane = found
                self._count()
                if now - self._backlog_counted >= 1.0:  # O(RetailModels): once a second at most
                    self._backlog_counted = now
                    due = sum(1 for when in self._due.values() if when <= now)
                    metrics.DUE_BACKLOG.set(due + len(self._changed) + len(self._retried))
                self._running[key] = asyncio.create_task(self._reconcile(key, lane))
                continue
            self._slots.release()
            metrics.DUE_BACKLOG.set(0)
            timeout = self._heap[0][0] - now if self._heap else None
            # asyncio.timeout, not wait_for: wait_for (Python 3.11) returned a wake that came
            # as the task was cancelled and dropped the cancellation (a shutdown lost).
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _reconcile(self, key: Key, lane: Lane = Lane.LOOK) -> None:
        lanes.URGENT.set(lane is Lane.CHANGE)  # this task's own context, and the tasks it starts
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
            delay = self._back_off(key, error)
            logger.warning("%s/%s: %s; retrying in %.0fs", *key, error, delay)
            result = "retry"
        except OperatorError as error:
            delay = self._back_off(key, error)
            logger.error("%s/%s: %s", *key, error)
            result = "error"
        except Exception as error:
            delay = self._back_off(key, error)
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
        failed = result in ("retry", "error", "crash")
        if result == "ok":
            self._failures.pop(key, None)
        if asked:
            self.hurry(key)
        elif asked is not None:
            self.schedule(key, 0.0)
        elif delay is not None and lane is not Lane.LOOK and failed:
            self._retry_change(key, delay)
        elif delay is not None:
            self.schedule(key, delay)

    def _back_off(self, key: Key, error: Exception) -> float:
        """How soon to try ``key`` again after ``error``: its own delay, doubled for each
        failure in a row before this one (a success forgets them), never past the resync."""
        before = self._failures.get(key, 0)
        self._failures[key] = before + 1
        return min(self._resync, errors.retry_after(error, self._resync) * 2.0 ** min(before, 32))

    async def stop(self) -> None:
        for key in list(self._retries):
            self._cancel_retry(key)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
