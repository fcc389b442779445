"""``Reactions``: a child's changes are acted on one at a time, the latest one waiting."""

from __future__ import annotations

import asyncio
from collections import Counter

from retail_operator.childwatch import Reactions


async def _react_while_busy() -> tuple[list[tuple[str, int]], int, int]:
    """Child a's first change is acted on slowly; a's next three, and b's first, come
    meanwhile. What was acted on, and the most acted on at once: for a, and in all."""
    acted: list[tuple[str, int]] = []
    release = asyncio.Event()
    busy: Counter[str] = Counter()
    peak_a = peak = 0

    async def act(value: tuple[str, int]) -> None:
        nonlocal peak_a, peak
        busy[value[0]] += 1
        peak_a, peak = max(peak_a, busy["a"]), max(peak, busy.total())
        acted.append(value)
        await release.wait()
        busy[value[0]] -= 1

    reactions: Reactions[str, tuple[str, int]] = Reactions(act, limit=10)
    reactions.submit("a", ("a", 1))
    await asyncio.sleep(0.01)  # a's first change is being acted on
    for version in (2, 3, 4):
        reactions.submit("a", ("a", version))
        await asyncio.sleep(0.01)
    reactions.submit("b", ("b", 1))
    await asyncio.sleep(0.01)
    release.set()
    while len(reactions):
        await asyncio.sleep(0.01)
    return acted, peak_a, peak


def test_a_childs_changes_are_acted_on_one_at_a_time_and_only_the_latest_waits() -> None:
    acted, peak_a, _ = asyncio.run(_react_while_busy())
    assert [value for value in acted if value[0] == "a"] == [("a", 1), ("a", 4)]
    assert peak_a == 1


def test_other_childs_changes_run_alongside() -> None:
    acted, _, peak = asyncio.run(_react_while_busy())
    assert ("b", 1) in acted
    assert peak == 2  # a's first and b's at once: b is not held up behind a


async def _after_a_failure() -> list[int]:
    acted: list[int] = []

    async def act(value: int) -> None:
        acted.append(value)
        await asyncio.sleep(0.02)
        if value == 1:
            raise RuntimeError("the API server said no")

    reactions: Reactions[str, int] = Reactions(act, limit=10)
    reactions.submit("a", 1)
    await asyncio.sleep(0.01)  # 1 is being acted on, and fails after 2 has come
    reactions.submit("a", 2)
    while len(reactions):
        await asyncio.sleep(0.01)
    await reactions.close()
    return acted


def test_a_failed_reaction_does_not_stop_the_next() -> None:
    assert asyncio.run(_after_a_failure()) == [1, 2]


async def _many_at_once(limit: int) -> tuple[int, list[tuple[str, int]]]:
    """Six children change while the API server is slow; child c changes again while it
    waits for its turn. The most acted on at once, and what was acted on."""
    acted: list[tuple[str, int]] = []
    busy = peak = 0

    async def act(value: tuple[str, int]) -> None:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        acted.append(value)
        await asyncio.sleep(0.02)
        busy -= 1

    reactions: Reactions[str, tuple[str, int]] = Reactions(act, limit=limit)
    for key in "abcdef":
        reactions.submit(key, (key, 1))
    await asyncio.sleep(0)
    reactions.submit("c", ("c", 2))  # c has not had its turn yet: it takes this one
    while len(reactions):
        await asyncio.sleep(0.01)
    return peak, acted


def test_at_most_limit_reactions_run_at_once_and_a_waiting_one_takes_the_latest() -> None:
    peak, acted = asyncio.run(_many_at_once(limit=2))
    assert peak == 2
    assert sorted(acted) == [("a", 1), ("b", 1), ("c", 2), ("d", 1), ("e", 1), ("f", 1)]


async def _tasks_while_many_wait() -> int:
    """A thousand children change while the API server holds every reaction: the tasks
    alive meanwhile, beside this one."""
    release = asyncio.Event()

    async def act(value: int) -> None:
        await release.wait()

    reactions: Reactions[int, int] = Reactions(act, limit=4)
    for key in range(1000):
        reactions.submit(key, key)
    await asyncio.sleep(0.01)
    alive = len(asyncio.all_tasks()) - 1
    release.set()
    while len(reactions):
        await asyncio.sleep(0.01)
    await reactions.close()
    return alive


def test_a_waiting_reaction_costs_no_task() -> None:
    assert asyncio.run(_tasks_while_many_wait()) == 4
