"""How late things come: a new RetailModel to the operator (from its creation time, whole
seconds), a step on the operator's busy event loop."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from retail_operator.metrics import measure_loop_lag
from retail_operator.retailmodelwatch import seen_new

NAME = "retail_operator_new_retailmodel_seen_seconds"


def _observed() -> tuple[float, float]:
    count = REGISTRY.get_sample_value(NAME + "_count") or 0.0
    return count, REGISTRY.get_sample_value(NAME + "_sum") or 0.0


def test_a_new_retailmodel_seen_late_is_counted_with_its_delay() -> None:
    count, total = _observed()
    created = (datetime.now(UTC) - timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ")
    seen_new(created)
    after_count, after_total = _observed()
    assert after_count == count + 1
    assert 42 <= after_total - total < 44


def test_a_creation_time_that_does_not_parse_is_left_out() -> None:
    count, _ = _observed()
    seen_new(None)
    seen_new("yesterday")
    assert _observed()[0] == count


async def _lag_while_blocked() -> float:
    """What the lag histogram gained while something held the loop for 0.3 s."""
    before = REGISTRY.get_sample_value("retail_operator_event_loop_lag_seconds_sum") or 0.0
    measuring = asyncio.create_task(measure_loop_lag(0.05))
    await asyncio.sleep(0.01)
    time.sleep(0.3)  # a step that never yields
    await asyncio.sleep(0.1)
    measuring.cancel()
    after = REGISTRY.get_sample_value("retail_operator_event_loop_lag_seconds_sum") or 0.0
    return after - before


def test_a_loop_held_by_one_step_shows_as_lag() -> None:
    assert asyncio.run(_lag_while_blocked()) >= 0.25
