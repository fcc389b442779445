"""Two lanes through a bounded resource: a change goes ahead of the periodic looks.

The scheduler starts a change's reconcile (a new RetailModel, a new spec, a new model object)
ahead of every periodic look that is due. Inside it, though, each call still waited behind the
calls of every other reconcile in flight: for one of the API connections, for a thread to make
an AWS call on. ``URGENT`` says a reconcile is a change's (the scheduler sets it in the
reconcile's own task; tasks started from there inherit it), and a ``Gate`` hands each freed
place to the longest-waiting urgent caller before any other, first come first served within a
lane.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

URGENT: ContextVar[bool] = ContextVar("retail_operator_urgent", default=False)


class Gate:
    """At most ``size`` holders at once; urgent waiters are let in before the others."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._others)

    async def acquire(self) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane = self._urgent if URGENT.get() else self._others
        lane.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a place just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    lane.remove(future)
            raise

    def release(self) -> None:
        for lane in (self._urgent, self._others):
            while lane:
                future = lane.popleft()
                if not future.done():  # a cancelled waiter's is done
                    future.set_result(None)
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class Workers:
    """Threads of their own for blocking calls (boto3's), ``size`` of them, with a ``Gate``
    in front: a call waits for a thread in its lane, not in the pool's own FIFO queue. The
    threads mostly wait on the network, so their number does not follow the cores (asyncio's
    default pool, shared with everything else, has five more threads than cores)."""

    def __init__(self, size: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)
        self._gate = Gate(size)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        async with self._gate:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, partial(function, *args))
