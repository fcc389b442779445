"""The single-flight cache and the status merge patch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from retail_operator.cache import TtlCache
from retail_operator.reconcile import merge_patch


def test_concurrent_lookups_share_one_load() -> None:
    async def scenario() -> tuple[list[int], int]:
        cache: TtlCache[str, int] = TtlCache(lambda _: 60.0)
        started = 0

        async def load() -> int:
            nonlocal started
            started += 1
            await asyncio.sleep(0.01)
            return 7

        values = await asyncio.gather(*(cache.get("k", load) for _ in range(50)))
        return list(values), started

    values, started = asyncio.run(scenario())
    assert values == [7] * 50 and started == 1


def test_failures_are_not_cached_and_reach_every_waiter() -> None:
    async def scenario() -> int:
        cache: TtlCache[str, int] = TtlCache(lambda _: 60.0)
        attempts = 0

        async def flaky() -> int:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.01)
            if attempts == 1:
                raise RuntimeError("throttled")
            return 1

        results = await asyncio.gather(
            *(cache.get("k", flaky) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await cache.get("k", flaky) == 1
        return attempts

    assert asyncio.run(scenario()) == 2


def test_expired_entries_load_again() -> None:
    async def scenario() -> int:
        cache: TtlCache[str, int] = TtlCache(lambda _: 0.0)
        calls = 0

        async def load() -> int:
            nonlocal calls
            calls += 1
            return calls

        await cache.get("k", load)
        await asyncio.sleep(0.001)
        return await cache.get("k", load)

    assert asyncio.run(scenario()) == 2


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"counts": {"HIGH": 1}}, {"counts": {}}, {"counts": {"HIGH": None}}),
        ({"deployedImage": "x"}, {}, {"deployedImage": None}),
        ({"c": [1]}, {"c": [1, 2]}, {"c": [1, 2]}),
    ],
)
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(old, new) == patch
