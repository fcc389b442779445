"""Leader election on a ``coordination.k8s.io`` Lease, the Kubernetes convention, fenced.

Every replica runs kopf and watches (so a standby has warm state and takes over at once), but
only the replica holding the Lease reconciles or writes anything. This is how
kube-controller-manager and controller-runtime operators do it, with the same defaults: a
15 s lease, renewed every 2 s, given up when it could not be renewed for 10 s.

A standby judges the lease by what it *observes*, not by the holder's clock: the lease has
expired when its record (holder and renew time) has not changed for ``lease_duration`` on the
standby's own monotonic clock, so skewed clocks cannot make two leaders. Taking over is an
update with the record's ``resourceVersion``, so of two standbys racing, one wins and the
other gets a conflict.

The leader fences itself. A renewal counts from the moment its request was *sent* (the API
server records the renew time somewhere after that), and leading ends ``renew_deadline``
after the last renewal that succeeded, whether or not a renewal is still hanging: each attempt
is cut off at that deadline. ``write_deadline`` is that moment, and every write the operator
makes (``kube.KubeApi``) must land before it, or is not sent. A standby cannot take over
before ``lease_duration`` has passed since it saw the last renewal, which is later than the
old leader's last possible write because ``renew_deadline < lease_duration`` (``Timing``
refuses anything else). On losing the lease, ``on_change(False)`` cancels what was running;
the replica goes back to being a standby in the same process, so an API server that is down
for a while costs no restart, and a leader shutting down releases the lease so its successor
need not wait.

A replica may be kept from taking the Lease until it is ``eligible`` (the operator: until its
children are listed, so a replica that cannot list them never leads while one that can
waits). Until then it still reads the Lease every retry period, so its judgement of a silent
holder starts at once: once eligible it takes over no later than it would have anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from retail_operator.errors import AccessDenied, NotLeader, OperatorError

logger = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"


@functools.cache
def identity() -> str:
    """This process's name, in the Lease and to kopf: the pod's name (or the host's) and a
    random suffix, as client-go does. Never the OS user name: the images run as a numeric UID
    with no passwd entry."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class LeaseStore(Protocol):
    """The three Lease calls an election needs (``kube.KubeApi`` provides them)."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any: ...

    async def create(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]: ...

    async def replace(self, manifest: dict[str, Any], *, fenced: bool = True) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration}): "
                "a leader must stop acting before a standby may take over"
            )


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElection:
    store: LeaseStore
    namespace: str
    name: str
    identity: str
    timing: Timing = Timing()
    on_change: Callable[[bool], Awaitable[None] | None] | None = None
    eligible: asyncio.Event | None = None  # set: may take the Lease; None: always may
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    losses: int = 0  # times this replica stopped leading because it could not renew
    _observed: tuple[Any, float] | None = None  # (holder and renew time, when first seen)
    _renewed_at: float = 0.0

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    def write_deadline(self) -> float:
        """When this replica's leadership ends unless renewed: writes must land before it."""
        if not self.leading.is_set():
            raise NotLeader(f"{self.identity} does not hold the lease {self.name}")
        return self._renewed_at + self.timing.renew_deadline

    async def run(self) -> None:
        """Acquire, renew, and after a lost lease try again as a standby, until the task is
        cancelled (shutdown: the lease is released)."""
        try:
            while True:
                await self._lead_once()
        except asyncio.CancelledError:
            if self.is_leader:
                await asyncio.shield(self._release())
            raise

    async def _lead_once(self) -> None:
        """Wait for the lease, then hold it until it cannot be renewed in time."""
        while True:
            sent = time.monotonic()
            if await self._try_acquire():
                break
            await asyncio.sleep(self.timing.retry_period)
        logger.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
        self._renewed_at = sent
        self.leading.set()
        await self._notify(True)
        while True:
            await asyncio.sleep(self.timing.retry_period)
            sent = time.monotonic()
            left = self._renewed_at + self.timing.renew_deadline - sent
            renewed = False
            if left > 0:
                # asyncio.timeout, not wait_for: wait_for (Python 3.11) returned a renewal that
                # completed as the task was cancelled and dropped the cancellation, so a
                # shutdown at that moment was lost and the replica went on leading.
                try:
                    async with asyncio.timeout(left):
                        renewed = await self._try_acquire()
                except TimeoutError:
                    logger.warning("renewing the lease took longer than the renew deadline")
            if renewed:
                self._renewed_at = sent
            elif time.monotonic() >= self._renewed_at + self.timing.renew_deadline:
                logger.error("could not renew the lease for %.1fs: standing by",
                             self.timing.renew_deadline)  # fmt: skip
                self.leading.clear()
                self.losses += 1
                self._observed = None  # judge the lease afresh, as a new standby would
                await self._notify(False)
                return

    async def _notify(self, leading: bool) -> None:
        if self.on_change is not None:
            result = self.on_change(leading)
            if result is not None:
                await result

    async def _try_acquire(self) -> bool:
        """One attempt to take or keep the lease; False when someone else holds it (or the
        API could not be asked)."""
        try:
            lease = await self.store.get(API_VERSION, "Lease", self.namespace, self.name)
            now = datetime.now(UTC)
            if self.eligible is not None and not self.eligible.is_set():
                spec = (lease or {}).get("spec", {})
                if spec.get("holderIdentity"):
                    self._expired(spec)  # judging a silent holder starts now, not once eligible
                return False
            if lease is None:
                await self.store.create(self._lease(now, transitions=0, acquired=now), fenced=False)
                return True
            spec = lease.get("spec", {})
            holder = spec.get("holderIdentity") or ""
            if holder != self.identity and holder and not self._expired(spec):
                return False
            mine = holder == self.identity
            transitions = int(spec.get("leaseTransitions", 0)) + (0 if mine else 1)
            acquired = spec.get("acquireTime") if mine else _micro_time(now)
            updated = self._lease(now, transitions=transitions, acquired=acquired)
            updated["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            await self.store.replace(updated, fenced=False)
            if not mine:
                logger.info("took over the lease from %r", holder or "nobody")
            return True
        except AccessDenied as error:
            logger.warning("cannot use the lease (RBAC?): %s", error)
            return False
        except OperatorError as error:  # a conflict (another replica won) or the API is down
            logger.debug("lease attempt failed: %s", error)
            return False

    def _expired(self, spec: dict[str, Any]) -> bool:
        record = (spec.get("holderIdentity"), spec.get("renewTime"))
        now = time.monotonic()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        return now - self._observed[1] >= duration

    def _lease(self, now: datetime, *, transitions: int, acquired: Any) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": acquired if isinstance(acquired, str) else _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": transitions,
            },
        }

    async def _release(self) -> None:
        """Give the lease up on shutdown: an empty holder, so a standby takes it at once."""
        try:
            lease = await self.store.get(API_VERSION, "Lease", self.namespace, self.name)
            if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.store.replace(lease, fenced=False)
            logger.info("released the lease")
        except OperatorError as error:
            logger.warning("could not release the lease: %s", error)
