"""A change's calls go ahead of the periodic looks' calls: for an API connection and for an
AWS thread, first come first served within each lane; a waiter that gives up holds nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from retail_operator.aws import clients
from retail_operator.aws.signatures import ImageSignatures
from retail_operator.errors import TemporaryError
from retail_operator.lanes import URGENT, Gate, Workers
from retail_operator.objects import Registry, Tracked
from retail_operator.reconcile import Outcome
from retail_operator.scheduler import Scheduler
from retail_operator.spec import ImageRef
from retail_provenance import verdict
from tests.support.signing import KeyPair


async def _take(gate: Gate, name: str, urgent: bool, order: list[str]) -> None:
    URGENT.set(urgent)
    async with gate:
        order.append(name)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_freed_place_goes_to_the_oldest_urgent_waiter_first() -> None:
    async def run() -> list[str]:
        gate, order = Gate(1), []
        await gate.acquire()
        waiters = [
            asyncio.create_task(_take(gate, name, urgent, order))
            for name, urgent in (("look-1", False), ("look-2", False), ("new-1", True))
        ]
        await _settle()
        waiters.append(asyncio.create_task(_take(gate, "new-2", True, order)))
        await _settle()
        gate.release()
        await asyncio.gather(*waiters)
        return order

    assert asyncio.run(run()) == ["new-1", "new-2", "look-1", "look-2"]


def test_a_cancelled_waiter_holds_no_place() -> None:
    async def run() -> list[str]:
        gate, order = Gate(1), []
        await gate.acquire()
        gone = asyncio.create_task(_take(gate, "gone", True, order))
        later = asyncio.create_task(_take(gate, "later", False, order))
        await _settle()
        gone.cancel()
        await _settle()
        gate.release()
        await later
        await gate.acquire()  # "later" gave its place back: the gate is free again
        return order

    assert asyncio.run(run()) == ["later"]


def test_an_urgent_aws_call_overtakes_the_queued_ones() -> None:
    async def run() -> list[str]:
        workers, order, busy = Workers(1, "test"), [], threading.Event()

        def blocker() -> None:
            busy.wait(5)

        async def call(name: str, urgent: bool) -> None:
            URGENT.set(urgent)
            await workers.run(order.append, name)

        first = asyncio.create_task(workers.run(blocker))
        await _settle()
        queued = [asyncio.create_task(call(f"look-{i}", False)) for i in range(3)]
        await _settle()
        queued.append(asyncio.create_task(call("new", True)))
        await _settle()
        busy.set()
        await asyncio.gather(first, *queued)
        return order

    assert asyncio.run(run()) == ["new", "look-0", "look-1", "look-2"]


class Recording:
    def __init__(self) -> None:
        self.urgent: dict[str, bool] = {}

    async def reconcile(self, tracked: Tracked) -> Outcome:
        self.urgent[tracked.key[1]] = URGENT.get()
        return Outcome({})

    def forget(self, key: object) -> None:
        pass


def test_only_a_changes_reconcile_is_marked_urgent() -> None:
    async def run() -> dict[str, bool]:
        registry, reconciler = Registry(), Recording()
        scheduler = Scheduler(reconciler, registry, resync_seconds=60, concurrency=4)
        for name, generation in (("changed", 2), ("looked-at", 1)):
            meta = {"name": name, "namespace": "shop", "uid": name, "generation": generation}
            registry.observe({"metadata": meta, "status": {"observedGeneration": 1}})
        scheduler.hurry(("shop", "changed"))
        scheduler.schedule(("shop", "looked-at"), 0.0)
        loop = asyncio.create_task(scheduler.run())
        while len(reconciler.urgent) < 2:
            await asyncio.sleep(0.001)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        assert not URGENT.get()  # the loop's own context is left alone
        return reconciler.urgent

    assert asyncio.run(run()) == {"changed": True, "looked-at": False}


class FailingOnce:
    """The change's first reconcile fails (an API server too slow to answer); every look
    takes a moment."""

    def __init__(self) -> None:
        self.order: list[str] = []

    async def reconcile(self, tracked: Tracked) -> Outcome:
        name = tracked.key[1]
        self.order.append(name)
        if name == "changed" and self.order.count(name) == 1:
            raise TemporaryError("the API server did not answer in time", retry_after=0.05)
        await asyncio.sleep(0.02)
        return Outcome({})

    def forget(self, key: object) -> None:
        pass


def test_a_change_that_failed_is_retried_ahead_of_the_due_looks() -> None:
    async def run() -> list[str]:
        registry, reconciler = Registry(), FailingOnce()
        scheduler = Scheduler(reconciler, registry, resync_seconds=60, concurrency=1)
        looks = [f"look-{i}" for i in range(10)]
        for name in ["changed", *looks]:
            meta = {"name": name, "namespace": "shop", "uid": name, "generation": 1}
            registry.observe({"metadata": meta})
        scheduler.hurry(("shop", "changed"))
        for name in looks:
            scheduler.schedule(("shop", name), 0.0)
        loop = asyncio.create_task(scheduler.run())
        while len(reconciler.order) < 12:
            await asyncio.sleep(0.005)
        loop.cancel()
        await scheduler.stop()
        await asyncio.gather(loop, return_exceptions=True)
        return reconciler.order

    order = asyncio.run(run())
    again = order.index("changed", 1)
    assert again <= 6, order  # 0.05 s after its failure, 20 ms a look: not behind all ten


def test_a_changes_image_signature_check_overtakes_the_looks_aws_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry reads of an image check wait for one of the AWS threads in their lane, like
    ECR's and S3's calls: on a thread of their own they would queue behind a storm's checks."""
    workers, order, busy = Workers(1, "test"), [], threading.Event()
    monkeypatch.setattr(clients, "WORKERS", workers)
    checks = ImageSignatures(registry_url="http://127.0.0.1:9", auth="none")

    def read_and_verify(image: ImageRef, digest: str, keys: object) -> verdict.Verdict:
        order.append(f"check {digest}")
        return verdict.unsigned("no signature")

    monkeypatch.setattr(checks, "_read_and_verify", read_and_verify)
    key = KeyPair.new().public
    image = ImageRef(repository="127.0.0.1:5000/mlops/retail-api", tag="v1")

    async def look(name: str) -> None:
        URGENT.set(False)
        await workers.run(order.append, name)

    async def change() -> None:
        URGENT.set(True)
        await checks.check(image, "sha256:" + "a" * 64, (key,))

    async def run() -> list[str]:
        first = asyncio.create_task(workers.run(busy.wait, 5))
        await _settle()
        queued = [asyncio.create_task(look(f"look-{i}")) for i in range(2)]
        await _settle()
        queued.append(asyncio.create_task(change()))
        await _settle()
        assert order == []  # the check waits for the busy thread too
        busy.set()
        await asyncio.gather(first, *queued)
        return order

    assert asyncio.run(run()) == ["check sha256:" + "a" * 64, "look-0", "look-1"]


def test_the_aws_threads_first_calls_at_once_make_one_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sixteen threads asking for the ECR client at the same moment share one: each used to
    make its own (a botocore client costs tens of milliseconds and a connection pool)."""
    made: list[str] = []
    start = threading.Barrier(16)

    def slow_client(service: str, region: str | None = None) -> object:
        made.append(service)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(clients, "client", slow_client)
    monkeypatch.setattr(clients, "_made", {})

    def first_call() -> object:
        start.wait(5)
        return clients.ecr("ap-southeast-1")

    with ThreadPoolExecutor(16) as pool:
        shared = set(map(id, pool.map(lambda _: first_call(), range(16))))
    assert (made, len(shared)) == (["ecr"], 1)
