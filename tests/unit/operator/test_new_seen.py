"""How late a new RetailModel reaches the operator, from its creation time (whole seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from retail_operator.handlers import _seen_new

NAME = "retail_operator_new_retailmodel_seen_seconds"


def _observed() -> tuple[float, float]:
    count = REGISTRY.get_sample_value(NAME + "_count") or 0.0
    return count, REGISTRY.get_sample_value(NAME + "_sum") or 0.0


def test_a_new_retailmodel_seen_late_is_counted_with_its_delay() -> None:
    count, total = _observed()
    created = (datetime.now(UTC) - timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _seen_new(created)
    after_count, after_total = _observed()
    assert after_count == count + 1
    assert 42 <= after_total - total < 44


def test_a_creation_time_that_does_not_parse_is_left_out() -> None:
    count, _ = _observed()
    _seen_new(None)
    _seen_new("yesterday")
    assert _observed()[0] == count
