"""When the next look comes: the earliest of every reason, never later than the resync; and a
lost lease cancels what runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from retail_operator.errors import TemporaryError
from retail_operator.lanes import URGENT
from retail_operator.objects import Due, Registry, Tracked
from retail_operator.reconcile import Outcome
from retail_operator.scheduler import Scheduler

RESYNC = 60.0
BODY = {"metadata": {"name": "prices", "namespace": "shop", "uid": "u", "generation": 1}}


class Reconciler:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.started = asyncio.Event()
        self.cancelled = False

    async def reconcile(self, tracked: Tracked) -> Outcome:
        self.started.set()
        if isinstance(self.result, BaseException):
            raise self.result
        if self.result == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return Outcome({}, self.result)

    def forget(self, key: Any) -> None:
        pass


def scheduler_for(
    reconciler: Any, registry: Registry, *, concurrency: int, leading: asyncio.Event | None = None
) -> Scheduler:
    return Scheduler(
        reconciler, registry, resync_seconds=RESYNC, concurrency=concurrency, leading=leading
    )


async def next_look(result: Any) -> float:
    """Seconds from a reconcile's end to the RetailModel's next one."""
    registry = Registry()
    tracked, _ = registry.observe(BODY)
    scheduler = scheduler_for(Reconciler(result), registry, concurrency=1)
    scheduler.schedule(tracked.key, 0.0)
    loop = asyncio.create_task(scheduler.run())
    while tracked.key in scheduler._due and scheduler._due[tracked.key] <= time.monotonic():
        await asyncio.sleep(0.001)
    while tracked.key not in scheduler._due:
        await asyncio.sleep(0.001)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    return scheduler._due[tracked.key] - time.monotonic()


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (None, RESYNC),
        (5.0, 5.0),  # a scan in progress, a canary's next look
        (2.27e9, RESYNC),  # a scan exception that ends in 2099: the resync still comes
        (TemporaryError("throttled", retry_after=3.0), 3.0),
        (TemporaryError("throttled", retry_after=1e6), RESYNC),
        (RuntimeError("a bug"), 30.0),
    ],
    ids=["resync", "sooner", "far exception", "temporary", "far retry", "crash"],
)
def test_the_next_look_is_the_earliest_reason_and_never_past_the_resync(
    result: Any, expected: float
) -> None:
    delay = asyncio.run(next_look(result))
    assert expected - 1 <= delay <= expected


async def lease_lost_mid_reconcile() -> tuple[
    Scheduler, Reconciler, asyncio.Event, asyncio.Task[None]
]:
    """A leader reconciling one RetailModel (forever) loses the Lease: paused, not leading."""
    registry = Registry()
    tracked, _ = registry.observe(BODY)
    reconciler = Reconciler("hang")
    leading = asyncio.Event()
    leading.set()
    scheduler = scheduler_for(reconciler, registry, concurrency=1, leading=leading)
    scheduler.schedule(tracked.key, 0.0)
    loop = asyncio.create_task(scheduler.run())
    await reconciler.started.wait()
    leading.clear()
    scheduler.pause()
    return scheduler, reconciler, leading, loop


def test_losing_the_lease_cancels_the_reconcile_in_flight() -> None:
    async def scenario() -> bool:
        _, reconciler, _, loop = await lease_lost_mid_reconcile()
        await asyncio.sleep(0.01)
        cancelled = reconciler.cancelled  # before asyncio.run cancels whatever is left
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return cancelled

    assert asyncio.run(scenario())


class Recorder:
    """Reconciles that take a little while each, in the order they start."""

    def __init__(self) -> None:
        self.order: list[str] = []

    async def reconcile(self, tracked: Tracked) -> Outcome:
        self.order.append(tracked.key[1])
        await asyncio.sleep(0.002)
        return Outcome({}, None)

    def forget(self, key: Any) -> None:
        pass


def _body(name: str, *, reconciled: bool) -> dict[str, Any]:
    meta = {"name": name, "namespace": "shop", "uid": name, "generation": 1}
    return {"metadata": meta, "status": {"observedGeneration": 1} if reconciled else {}}


def test_a_new_retailmodel_goes_ahead_of_a_resync_storm() -> None:
    """Hundreds of periodic looks due at once (a resync, a restart) must not starve a RetailModel
    created meanwhile: it is reconciled next, not after every look that was due before it."""

    async def scenario() -> list[str]:
        registry = Registry()
        reconciler = Recorder()
        scheduler = scheduler_for(reconciler, registry, concurrency=2)
        for index in range(300):
            tracked, due = registry.observe(_body(f"old-{index}", reconciled=True))
            assert due is Due.UNSEEN
            scheduler.schedule(tracked.key, 0.0)
        loop = asyncio.create_task(scheduler.run())
        while len(reconciler.order) < 10:
            await asyncio.sleep(0.001)
        new, due = registry.observe(_body("new", reconciled=False))
        assert due is Due.CHANGED
        scheduler.hurry(new.key)
        while "new" not in reconciler.order:
            await asyncio.sleep(0.001)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await scheduler.stop()
        return reconciler.order

    order = asyncio.run(scenario())
    assert order.index("new") <= 10 + 2 + 1  # at most the looks already started or taken


def test_a_change_during_a_reconcile_is_reconciled_again_at_once() -> None:
    class Slow:
        def __init__(self) -> None:
            self.calls = 0
            self.release = asyncio.Event()

        async def reconcile(self, tracked: Tracked) -> Outcome:
            self.calls += 1
            await self.release.wait()
            return Outcome({}, None)

        def forget(self, key: Any) -> None:
            pass

    async def scenario() -> int:
        registry = Registry()
        tracked, _ = registry.observe(BODY)
        reconciler = Slow()
        scheduler = scheduler_for(reconciler, registry, concurrency=1)
        scheduler.schedule(tracked.key, 0.0)
        loop = asyncio.create_task(scheduler.run())
        while not reconciler.calls:
            await asyncio.sleep(0.001)
        scheduler.hurry(tracked.key)  # read the old spec: must look again, not at the resync
        reconciler.release.set()
        deadline = time.monotonic() + 1
        while reconciler.calls < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return reconciler.calls

    assert asyncio.run(scenario()) == 2


def test_leading_again_before_the_cancel_lands_still_looks_at_every_retailmodel() -> None:
    """Lease lost then regained while a reconcile's cancellation is still on its way: the
    resume's look must not be lost with the cancelled reconcile (seen at 2,000 RetailModels:
    30 never reconciled)."""

    async def scenario() -> int:
        scheduler, reconciler, leading, loop = await lease_lost_mid_reconcile()
        reconciler.started.clear()
        reconciler.result = None
        scheduler.resume()  # the cancel has not been delivered yet
        leading.set()
        try:
            await asyncio.wait_for(reconciler.started.wait(), 1)
        except TimeoutError:
            pass
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return int(reconciler.started.is_set())

    assert asyncio.run(scenario()) == 1


def test_no_look_starts_before_the_child_lists_are_in() -> None:
    """A due RetailModel waits for ``ready`` (the children's first lists): looked at before,
    it would find no children and read each one by one."""
    asyncio.run(_waits_for_ready())


async def _waits_for_ready() -> None:
    registry = Registry()
    tracked, _ = registry.observe(BODY)
    reconciler = Reconciler(None)
    ready = asyncio.Event()
    scheduler = Scheduler(reconciler, registry, resync_seconds=RESYNC, concurrency=4, ready=ready)
    scheduler.hurry(tracked.key)
    loop = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0.2)
        assert not reconciler.started.is_set()
        ready.set()
        await asyncio.wait_for(reconciler.started.wait(), 5)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        await asyncio.sleep(0.001)


class FailingFirst:
    """Every ``failing-*`` RetailModel's first reconcile fails (an API server that timed out);
    ``blocker`` holds the only slot until released."""

    def __init__(self, retry_after: float = 0.001) -> None:
        self.retry_after = retry_after
        self.order: list[tuple[str, bool]] = []  # (name, urgent) in the order they start
        self.release = asyncio.Event()

    async def reconcile(self, tracked: Tracked) -> Outcome:
        name = tracked.key[1]
        self.order.append((name, URGENT.get()))
        if name == "blocker":
            await self.release.wait()
        elif name.startswith("failing") and [n for n, _ in self.order].count(name) == 1:
            raise TemporaryError(
                "the API server did not answer in time", retry_after=self.retry_after
            )
        return Outcome({}, None)

    def forget(self, key: Any) -> None:
        pass


def test_a_new_retailmodel_goes_ahead_of_the_retried_changes() -> None:
    """Changes whose reconcile timed out come back in a lane of their own: a RetailModel
    created meanwhile is reconciled before them (at 10,000 it waited seconds behind them), and
    their calls are not marked urgent, while they still go ahead of the periodic looks."""

    async def scenario() -> list[tuple[str, bool]]:
        registry, reconciler = Registry(), FailingFirst()
        scheduler = scheduler_for(reconciler, registry, concurrency=1)
        failing = [f"failing-{i}" for i in range(5)]
        for name in [*failing, "blocker", "new", "look"]:
            registry.observe(_body(name, reconciled=False))
        for name in failing:
            scheduler.hurry(("shop", name))
        scheduler.hurry(("shop", "blocker"))
        loop = asyncio.create_task(scheduler.run())
        await until(lambda: ("blocker", True) in reconciler.order)
        await until(lambda: len(scheduler._retried) == len(failing))  # every retry due meanwhile
        scheduler.schedule(("shop", "look"), 0.0)
        scheduler.hurry(("shop", "new"))
        reconciler.release.set()
        await until(lambda: len(reconciler.order) >= 2 * len(failing) + 3)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await scheduler.stop()
        return reconciler.order

    before = {lane: _waits(lane) for lane in ("change", "retry", "look")}
    order = asyncio.run(scenario())
    waits = {lane: _waits(lane) - count for lane, count in before.items()}
    assert waits == {"change": 7, "retry": 5, "look": 1}  # each start's wait, in its lane
    after = order[order.index(("blocker", True)) + 1 :]
    assert after[0] == ("new", True), order
    assert after[1:-1] == [(f"failing-{i}", False) for i in range(5)], order
    assert after[-1] == ("look", False), order


def _waits(lane: str) -> float:
    """How many waits for a slot the lane's histogram has counted."""
    counted = REGISTRY.get_sample_value("retail_operator_queue_wait_seconds_count", {"lane": lane})
    return counted or 0.0


def test_a_retailmodel_that_keeps_failing_backs_off_and_a_success_forgets_it() -> None:
    """Each failure in a row doubles the error's delay (never past the resync); retrying a
    timed-out call at the same pace only adds to the load that timed it out."""

    class Failing:
        def __init__(self) -> None:
            self.failing = True
            self.starts: list[float] = []

        async def reconcile(self, tracked: Tracked) -> Outcome:
            self.starts.append(time.monotonic())
            if self.failing:
                raise TemporaryError("the API server did not answer in time", retry_after=0.05)
            return Outcome({}, None)

        def forget(self, key: Any) -> None:
            pass

    async def scenario() -> tuple[list[float], dict[Any, int], float]:
        registry, reconciler = Registry(), Failing()
        tracked, _ = registry.observe(BODY)
        scheduler = scheduler_for(reconciler, registry, concurrency=1)
        scheduler.hurry(tracked.key)
        loop = asyncio.create_task(scheduler.run())
        while len(reconciler.starts) < 5:
            await asyncio.sleep(0.005)
        reconciler.failing = False
        while len(reconciler.starts) < 6:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)
        failures = dict(scheduler._failures)
        next_look = scheduler._due[tracked.key] - time.monotonic()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await scheduler.stop()
        return reconciler.starts, failures, next_look

    starts, failures, next_look = asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2, 0.4, 0.8), strict=True):
        assert gap >= expected - 0.005, gaps
    assert failures == {}  # the success forgot them
    assert next_look > RESYNC - 1  # and the next look is the resync's


def test_a_retailmodel_failing_for_ever_is_still_tried_at_every_resync() -> None:
    delay = asyncio.run(next_look_after_failures(12))
    assert RESYNC - 1 <= delay <= RESYNC


async def next_look_after_failures(count: int) -> float:
    """Seconds to the next look after ``count`` failed looks in a row (3 s each, doubled)."""
    registry = Registry()
    tracked, _ = registry.observe(BODY)
    scheduler = scheduler_for(Reconciler(None), registry, concurrency=1)
    scheduler._failures[tracked.key] = count - 1
    delay = scheduler._back_off(tracked.key, TemporaryError("timed out", retry_after=3.0))
    return delay


def test_a_shutdown_that_arrives_with_a_wake_is_not_lost() -> None:
    """Cancelling the scheduler (shutdown) at the moment something wakes it must stop it:
    ``asyncio.wait_for`` around the wait returned the wake and dropped the cancellation when
    both came at once, and the scheduler went on (the same race hung the lease's renewal)."""

    async def scenario() -> bool:
        registry = Registry()
        tracked, _ = registry.observe(BODY)
        scheduler = scheduler_for(Reconciler(None), registry, concurrency=1)
        scheduler.schedule(tracked.key, 1000.0)  # something due, far off: a timed wait
        loop = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.05)  # waiting for that, or for a wake
        scheduler._wake.set()
        loop.cancel()
        done, _ = await asyncio.wait({loop}, timeout=1.0)
        stopped = loop in done and loop.cancelled()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return stopped

    assert asyncio.run(scenario()), "the shutdown was lost: the scheduler went on"
