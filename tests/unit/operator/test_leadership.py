"""Leader election on a Lease, against an in-memory store that checks resourceVersion like the
API server: one leader at a time, takeover after a silent leader's lease runs out, at once after
a release, and a leader that cannot renew stops leading."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest

from retail_operator.errors import NotLeader, TemporaryError
from retail_operator.leadership import LeaderElection, Timing

# Short enough for a unit test, long enough that a starved event loop (a loaded CI machine can
# hold one back for a few hundred milliseconds) does not pass for a silent leader.
FAST = Timing(lease_duration=1.5, renew_deadline=1.0, retry_period=0.1)
SLACK = 0.25  # seconds the event loop may take to notice a deadline it has passed


class MemoryLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down_for: set[str] = set()  # identities whose calls fail (a partitioned replica)
        self.hung_for: set[str] = set()  # identities whose calls never return
        # A task cancelled from inside the next replace, just before it succeeds (a shutdown
        # that arrives as a renewal lands).
        self.cancel_on_replace: asyncio.Task[None] | None = None

    async def _check(self, manifest: dict[str, Any] | None, caller: str) -> None:
        if caller in self.down_for:
            raise TemporaryError("unreachable", reason="ApiUnavailable", retry_after=0)
        if caller in self.hung_for:
            await asyncio.Event().wait()  # a connection that stopped answering

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return copy.deepcopy(self.lease)

    async def create(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        assert not fenced, "the Lease's own writes are never fenced"
        if self.lease is not None:
            raise TemporaryError("409 exists", reason="ApiUnavailable", retry_after=0)
        return self._store(manifest)

    async def replace(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        assert not fenced, "the Lease's own writes are never fenced"
        assert self.lease is not None
        if manifest["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise TemporaryError("409 conflict", reason="ApiUnavailable", retry_after=0)
        if self.cancel_on_replace is not None:
            self.cancel_on_replace.cancel()
            self.cancel_on_replace = None
        return self._store(manifest)

    def _store(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(manifest)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.lease = stored
        return copy.deepcopy(stored)

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"]["holderIdentity"]


class Replica:
    """A LeaseStore as one replica sees it: the shared store, unless partitioned away."""

    def __init__(self, leases: MemoryLeases, identity: str) -> None:
        self.leases, self.identity = leases, identity

    async def get(self, *args: str) -> Any:
        await self.leases._check(None, self.identity)
        return await self.leases.get(*args)

    async def create(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        await self.leases._check(manifest, self.identity)
        return await self.leases.create(manifest, fenced=fenced)

    async def replace(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]:
        await self.leases._check(manifest, self.identity)
        return await self.leases.replace(manifest, fenced=fenced)


def election(leases: MemoryLeases, identity: str) -> LeaderElection:
    return LeaderElection(Replica(leases, identity), "ns", "retail-operator", identity, FAST)


async def until(predicate: Any, timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
def leases() -> MemoryLeases:
    return MemoryLeases()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_one_leader_and_a_standby(leases: MemoryLeases) -> None:
    a, b = election(leases, "a"), election(leases, "b")
    tasks = [asyncio.create_task(a.run())]
    await until(lambda: a.is_leader)
    tasks.append(asyncio.create_task(b.run()))
    await asyncio.sleep(FAST.lease_duration * 2)  # b keeps seeing a renew: it never leads
    assert a.is_leader and not b.is_leader and leases.holder == "a"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_silent_leader_stands_by_and_the_standby_takes_over(
    leases: MemoryLeases,
) -> None:
    a, b = election(leases, "a"), election(leases, "b")
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.run())
    leases.down_for.add("a")  # a can no longer reach the API server
    await until(lambda: a.losses == 1)  # it stops leading after the renew deadline…
    assert not a.is_leader and not task_a.done()  # …and stays up, as a standby
    await until(lambda: b.is_leader)  # b takes over once the lease has run out
    assert leases.holder == "b" and leases.lease is not None
    assert leases.lease["spec"]["leaseTransitions"] == 1
    leases.down_for.clear()  # a reaches the API server again: b renews, so a stays standby
    await asyncio.sleep(FAST.lease_duration * 2)
    assert b.is_leader and not a.is_leader and leases.holder == "b"
    for task in (task_a, task_b):
        task.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)


async def test_a_shutdown_that_arrives_as_a_renewal_lands_is_not_lost(
    leases: MemoryLeases,
) -> None:
    """A cancellation (shutdown) delivered while a renewal completes must stop the election
    and release the lease: ``asyncio.wait_for`` around the renewal returned the renewal's
    result and dropped the cancellation when both happened at once, and the replica went on
    leading (a CI run hung for 600 s in the test above, cancelling a leader this way)."""
    a = election(leases, "a")
    task = asyncio.create_task(a.run())
    try:
        await until(lambda: a.is_leader)
        leases.cancel_on_replace = task  # the next renewal's replace
        done, _ = await asyncio.wait({task}, timeout=FAST.lease_duration * 2)
        assert task in done and task.cancelled(), "the shutdown was lost: still running"
        assert leases.holder == ""  # and the lease was given up
    finally:
        task.cancel()  # a lost shutdown leaves it running: stopped here either way
        await asyncio.gather(task, return_exceptions=True)


async def test_a_released_lease_is_taken_at_once(leases: MemoryLeases) -> None:
    a, b = election(leases, "a"), election(leases, "b")
    b.timing = Timing(lease_duration=30, renew_deadline=20, retry_period=0.1)
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.run())
    await asyncio.sleep(0.05)
    task_a.cancel()  # shutdown: releases the lease
    await asyncio.gather(task_a, return_exceptions=True)
    assert leases.holder == ""
    await until(lambda: b.is_leader, timeout=2.0)  # far sooner than b's 30 s lease duration
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)


async def test_racing_standbys_never_both_lead(leases: MemoryLeases) -> None:
    replicas = [election(leases, name) for name in "abcd"]
    tasks = [asyncio.create_task(r.run()) for r in replicas]
    await until(lambda: any(r.is_leader for r in replicas))
    await asyncio.sleep(FAST.lease_duration * 2)
    assert sum(r.is_leader for r in replicas) == 1
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_leader_whose_renewal_hangs_stops_at_the_renew_deadline(
    leases: MemoryLeases,
) -> None:
    """A renewal that never returns must not keep a leader leading: it is cut off at the renew
    deadline, counted from the last renewal sent, and no write may be started after it."""
    a = election(leases, "a")
    task = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    deadline = a.write_deadline()
    assert deadline - time.monotonic() <= FAST.renew_deadline
    leases.hung_for.add("a")
    hung_at = time.monotonic()
    await until(lambda: not a.is_leader, timeout=FAST.lease_duration)
    stopped = time.monotonic()
    assert stopped - hung_at <= FAST.renew_deadline + FAST.retry_period + SLACK
    assert stopped < hung_at + FAST.lease_duration  # before any standby could take over
    with pytest.raises(NotLeader):
        a.write_deadline()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_ineligible_replica_never_takes_the_lease_but_judges_the_holder_meanwhile(
    leases: MemoryLeases,
) -> None:
    """A replica not yet eligible (the operator: its children not listed) takes neither a free
    lease nor a silent holder's; once eligible it takes the silent holder's at once, because
    its clock on that holder started while it waited, not when it became eligible."""
    lonely = election(leases, "lonely")
    lonely.eligible = asyncio.Event()
    task = asyncio.create_task(lonely.run())
    await asyncio.sleep(FAST.lease_duration)
    assert leases.lease is None and not lonely.is_leader  # a free lease, not taken
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    a, b = election(leases, "a"), election(leases, "b")
    b.eligible = asyncio.Event()
    task_a = asyncio.create_task(a.run())
    await until(lambda: a.is_leader)
    task_b = asyncio.create_task(b.run())
    leases.down_for.add("a")  # a goes silent
    silent = time.monotonic()
    await asyncio.sleep(FAST.lease_duration + 4 * FAST.retry_period)  # long expired
    assert not b.is_leader and leases.holder == "a"
    b.eligible.set()
    eligible = time.monotonic()
    await until(lambda: b.is_leader)
    assert time.monotonic() - eligible <= FAST.retry_period + SLACK  # no lease duration more
    assert time.monotonic() - silent >= FAST.lease_duration
    for pending in (task_a, task_b):
        pending.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10, 2), (10, 15, 2), (10, 5, 5), (10, 5, 0)],
    ids=["renew = lease", "renew > lease", "retry = renew", "no retry period"],
)
def test_timings_that_could_make_two_leaders_are_refused(
    lease: float, renew: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        Timing(lease_duration=lease, renew_deadline=renew, retry_period=retry)
