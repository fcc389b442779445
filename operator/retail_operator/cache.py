"""An asyncio cache with a time-to-live per entry and single-flight loading.

Concurrent look-ups of one key share a single load, so a thousand RetailModels that name the
same image cost one ECR call, not a thousand. Failures are not cached: the next caller loads
again. The TTL is chosen per value, so a finished scan can live longer than one in progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    future: asyncio.Future[V]
    expires_at: float = float("inf")  # set when the load finishes


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: Callable[[V], float], *, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, _Entry[V]] = {}
        self.loads = 0  # how many times a loader actually ran (for metrics and tests)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at > time.monotonic():
            return await asyncio.shield(entry.future)
        entry = _Entry(asyncio.get_running_loop().create_future())
        self._entries[key] = entry
        self._evict_if_full()
        self.loads += 1
        try:
            value = await load()
        except BaseException as error:
            self._entries.pop(key, None)
            if not entry.future.done():
                entry.future.set_exception(error)
                entry.future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        entry.expires_at = time.monotonic() + self._ttl(value)
        entry.future.set_result(value)
        return value

    def _evict_if_full(self) -> None:
        if len(self._entries) <= self._max_entries:
            return
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
